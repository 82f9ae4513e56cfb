"""OpenAPI description of the labeling endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}

SCHEMAS = {
    "Task": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["classification", "regression"]},
        "classes": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "name": {"type": "string"}, "key": {"type": "string"}}}},
        "allow_unsure": {"type": "boolean"}, "strategy": {"type": "string"},
        "surveys": {"type": "array", "items": {"type": "string"}},
        "embedding_set_id": {"type": "integer"}, "url": {"type": "string"}, "label_url": {"type": "string"},
        "target": {"type": "string"}, "unit": {"type": "string"},
        "range": {"type": "array", "items": {"type": ["number", "null"]}}}},
}

PATHS = {
    "/api/tasks/": {"get": {
        "summary": "List labeling tasks (id, name, kind, classes, ...)", "operationId": "listTasks",
        "tags": ["labeling"],
        "responses": json_ok({"type": "object", "properties": {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}})}},
    "/api/tasks/{task_id}/enqueue": {"post": {
        "summary": "Put galaxies at the front of a task's labeling queue (labeler or better)",
        "description": "Used by the map's lasso 'send to labeling task'. Galaxies outside the task's "
                       "surveys are ignored and counted in `ignored`.",
        "operationId": "enqueueGalaxies", "tags": ["labeling"], "parameters": [TASK_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["galaxy_ids"],
            "properties": {"galaxy_ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 5000}}}}}},
        "responses": {**json_ok({"type": "object", "properties": {
            "task_id": {"type": "integer"}, "enqueued": {"type": "integer"}, "ignored": {"type": "integer"},
            "label_url": {"type": "string"}, "message": {"type": "string"}}}),
            **error_responses(400, 401, 403, 404)}}},
}
