"""OpenAPI description of the job endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

SCHEMAS = {"Job": {"type": "object", "properties": {
    "id": {"type": "integer"}, "kind": {"type": "string"}, "title": {"type": "string"},
    "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
    "progress": {"type": "number", "minimum": 0, "maximum": 1}, "message": {"type": "string"},
    "attempts": {"type": "integer"}, "queue": {"type": "string"}, "result": {"type": "object"}}}}

PATHS = {
    "/api/jobs/": {"get": {
        "summary": "Recent jobs, the active ones, or those with the given ids", "operationId": "listJobs",
        "tags": ["jobs"],
        "parameters": [{"name": "ids", "in": "query", "schema": {"type": "string"},
                        "description": "comma-separated job ids"},
                       {"name": "active", "in": "query", "schema": {"type": "string"}}],
        "responses": {**json_ok({"type": "object", "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}),
            **error_responses(400)}}},
    "/api/jobs/{job_id}/": {"get": {
        "summary": "One job with its live metrics (e.g. the training loss curve)", "operationId": "getJob",
        "tags": ["jobs"],
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {**json_ok({"$ref": "#/components/schemas/Job"}), **error_responses(404)}}},
}
