"""OpenAPI description of the labeling endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}

ROUND = {"type": "object", "properties": {
    "number": {"type": "integer"}, "status": {"type": "string", "enum": ["building", "ready", "failed"]},
    "trigger": {"type": "string", "enum": ["manual", "auto"]}, "model_version": {"type": "string"},
    "n_labels": {"type": "integer"}, "n_train": {"type": "integer"}, "n_val": {"type": "integer"},
    "metrics": {"type": "object", "description": "accuracy, balanced_accuracy, macro_f1, ece, confusion, "
                "reliability (classification) or rmse, coverage_90 (regression), and how they were validated"},
    "transfer": {"type": "object", "description": "per target survey: accuracy before/after adaptation"},
    "strategy": {"type": "string"}, "seconds": {"type": ["number", "null"]}, "error": {"type": "string"},
    "job_id": {"type": ["integer", "null"]}}}
PROGRESS = {"type": "object", "properties": {
    "labels_total": {"type": "integer"}, "since_last_round": {"type": "integer"},
    "round_every": {"type": "integer"}, "next_round": {"type": "integer"},
    "remaining_in_round": {"type": ["integer", "null"]}, "queue_remaining": {"type": "integer"},
    "training_round": {"type": ["integer", "null"]}}}
QUEUE_ITEM = {"type": "object", "properties": {
    "galaxy_id": {"type": "integer"}, "source_id": {"type": "string"}, "survey": {"type": "string"},
    "ra": {"type": ["number", "null"]}, "dec": {"type": ["number", "null"]}, "metadata": {"type": "object"},
    "image_url": {"type": "string"}, "composite_url": {"type": "string"}, "thumb_url": {"type": "string"},
    "bands": {"type": "array", "items": {"type": "object"}},
    "reason": {"type": "string", "description": "why the strategy picked this galaxy"},
    "source": {"type": "string", "enum": ["manual", "strategy", "cold_start"]}, "strategy": {"type": "string"},
    "round": {"type": ["integer", "null"]}, "prediction": {"type": ["object", "null"]}}}
TABLE_PAGE = {"type": "object", "properties": {
    "count": {"type": "integer"}, "page": {"type": "integer"}, "num_pages": {"type": "integer"},
    "per_page": {"type": "integer"}, "columns": {"type": "array", "items": {"type": "string"}},
    "results": {"type": "array", "items": {"type": "object"}}}}
PAGING = [TASK_ID, {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
          {"name": "per", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}}]

SCHEMAS = {
    "Round": ROUND, "LabelingProgress": PROGRESS, "QueueItem": QUEUE_ITEM, "TablePage": TABLE_PAGE,
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
    "/api/tasks/{task_id}/": {"get": {
        "summary": "One task with its progress, agreement (Fleiss/Cohen kappa) and serving round",
        "operationId": "getTask", "tags": ["labeling"], "parameters": [TASK_ID],
        "responses": {**json_ok({"allOf": [{"$ref": "#/components/schemas/Task"}, {"type": "object", "properties": {
            "progress": {"$ref": "#/components/schemas/LabelingProgress"}, "agreement": {"type": "object"},
            "serving_round": {"oneOf": [{"$ref": "#/components/schemas/Round"}, {"type": "null"}]}}}]}),
            **error_responses(401, 404)}}},
    "/api/tasks/{task_id}/queue": {"get": {
        "summary": "The next galaxies for the logged-in labeller, reserved for them (labeler or better)",
        "description": "Refills from the task's query strategy when the queue runs dry. Each item says why "
                       "it was picked.", "operationId": "nextGalaxies", "tags": ["labeling"],
        "parameters": [TASK_ID, {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 50}},
                       {"name": "exclude", "in": "query", "schema": {"type": "string"},
                        "description": "comma-separated galaxy ids the client already holds"}],
        "responses": {**json_ok({"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/QueueItem"}},
            "progress": {"$ref": "#/components/schemas/LabelingProgress"}}}),
            **error_responses(400, 401, 403, 404, 409)}}},
    "/api/tasks/{task_id}/labels": {"post": {
        "summary": "Record an answer (append-only): a class, a value, unsure or skip (labeler or better)",
        "operationId": "recordLabel", "tags": ["labeling"], "parameters": [TASK_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["galaxy_id"], "properties": {
                "galaxy_id": {"type": "integer"}, "kind": {"type": "string", "enum": ["value", "unsure", "skip"]},
                "class_index": {"type": "integer", "description": "classification tasks"},
                "value": {"type": "number", "description": "regression tasks, within the task's range"}}}}}},
        "responses": {"201": {"description": "Recorded", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"label_id": {"type": "integer"}, "galaxy_id": {"type": "integer"},
                                             "kind": {"type": "string"},
                                             "progress": {"$ref": "#/components/schemas/LabelingProgress"}}}}}},
                      **error_responses(400, 401, 403, 404)}}},
    "/api/tasks/{task_id}/undo": {"post": {
        "summary": "Retract your latest answer in the task, or on one galaxy (appends an undo row)",
        "operationId": "undoLabel", "tags": ["labeling"], "parameters": [TASK_ID],
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"galaxy_id": {"type": "integer"}}}}}},
        "responses": {**json_ok({"type": "object", "properties": {
            "undo_id": {"type": "integer"}, "undone": {"type": "object"}}}),
            **error_responses(400, 401, 403, 404, 409)}}},
    "/api/tasks/{task_id}/rounds": {
        "get": {"summary": "The task's rounds with metrics and model versions", "operationId": "listRounds",
                "tags": ["labeling"], "parameters": [TASK_ID],
                "responses": {**json_ok({"type": "object", "properties": {
                    "rounds": {"type": "array", "items": {"$ref": "#/components/schemas/Round"}}}}),
                    **error_responses(401, 404)}},
        "post": {"summary": "Retrain now: queue a round on the cpu queue (curator or better)",
                 "operationId": "startRound", "tags": ["labeling"], "parameters": [TASK_ID],
                 "responses": {"202": {"description": "Round queued", "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"round": {"$ref": "#/components/schemas/Round"},
                                                      "job_url": {"type": "string"}}}}}},
                     **error_responses(401, 403, 404, 409)}}},
    "/api/tasks/{task_id}/catalogue": {"get": {
        "summary": "Per galaxy: RA/Dec, consensus and vote fractions, prediction, uncertainty, model version, round",
        "description": "The same columns as the CSV/FITS/VOTable export (/tasks/{task_id}/export?table=catalogue).",
        "operationId": "taskCatalogue", "tags": ["labeling"], "parameters": PAGING,
        "responses": {**json_ok({"$ref": "#/components/schemas/TablePage"}), **error_responses(400, 401, 404)}}},
    "/api/tasks/{task_id}/labels/history": {"get": {
        "summary": "Every label row as recorded (undo rows included; `counts` marks current answers)",
        "operationId": "taskLabels", "tags": ["labeling"], "parameters": PAGING,
        "responses": {**json_ok({"$ref": "#/components/schemas/TablePage"}), **error_responses(400, 401, 404)}}},
    "/api/tasks/{task_id}/finetune": {"post": {
        "summary": "Fine-tune the task's encoder on its labels (gpu queue), re-embed, switch, retrain (curator)",
        "description": "Queues label_finetune -> embed -> label_use_embeddings. Optional body "
                       "{\"config\": FinetuneConfig fields, e.g. {\"epochs\": 10}}. Nothing changes for the task "
                       "until the last job succeeds.", "operationId": "finetuneEncoder", "tags": ["labeling"],
        "parameters": [TASK_ID],
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"config": {"type": "object"}}}}}},
        "responses": {"202": {"description": "Jobs queued", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"job_id": {"type": "integer"}, "job_url": {"type": "string"}}}}}},
            **error_responses(400, 401, 403, 404, 409)}}},
}
