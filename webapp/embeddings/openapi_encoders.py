"""OpenAPI description of the encoder endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

_ID = {"type": "integer"}
_ENCODER_ID = {"name": "encoder_id", "in": "path", "required": True, "schema": _ID}
_AUGMENT = {"type": "object", "description": "AugmentConfig fields (ml/augment.py); omitted ones keep defaults",
            "properties": {"rotate": {"type": "boolean"}, "flip": {"type": "boolean"},
                           "max_shift": {"type": "number", "minimum": 0, "maximum": 0.3},
                           "scale_min": {"type": "number"}, "scale_max": {"type": "number"},
                           "blur_fwhm_max": {"type": "number", "minimum": 0, "maximum": 8},
                           "noise_max": {"type": "number", "minimum": 0, "maximum": 10},
                           "flux_scale_sigma": {"type": "number", "minimum": 0, "maximum": 1},
                           "reddening_max_ebv": {"type": "number", "minimum": 0, "maximum": 1}}}
_JOB_ACCEPTED = {"202": {"description": "Job queued", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"job_id": _ID, "job_url": {"type": "string"}, "api_url": {"type": "string"}}}}}}}

SCHEMAS = {
    "Encoder": {"type": "object", "properties": {
        "id": _ID, "name": {"type": "string"}, "method": {"type": "string", "examples": ["simclr", "byol"]},
        "source": {"type": "string", "enum": ["trained", "uploaded"]},
        "status": {"type": "string", "enum": ["building", "ready", "failed"]},
        "epochs_done": _ID, "epochs": {"type": ["integer", "null"]},
        "training_seconds": {"type": ["number", "null"]}, "dim": {"type": ["integer", "null"]},
        "surveys": {"type": "array", "items": {"type": "string"}},
        "config": {"type": "object", "description": "train (TrainConfig), encoder (EncoderConfig), preprocess"},
        "metrics": {"type": "object", "description": "evaluation: {survey: kNN / linear probe vs PCA and random "
                                                     "baselines, balanced accuracy and per-class recall}; "
                                                     "stopped: why training was interrupted"},
        "train_job_id": {"type": ["integer", "null"]}, "created_at": {"type": "string"},
        "embedding_sets": {"type": "array", "items": {"type": "object", "properties": {
            "id": _ID, "name": {"type": "string"}, "n": _ID, "dim": _ID, "status": {"type": "string"},
            "checksum": {"type": "string"}, "surveys": {"type": "array", "items": {"type": "string"}}}}},
        "url": {"type": "string"}}},
    "TrainEncoderRequest": {"type": "object", "required": ["surveys", "name"], "properties": {
        "surveys": {"type": "array", "items": {"type": "string"}, "description": "survey slugs"},
        "name": {"type": "string"}, "method": {"type": "string", "enum": ["simclr", "byol"]},
        "preset": {"type": "string", "enum": ["small", "large"]},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
        "batch_size": {"type": "integer", "minimum": 4, "maximum": 8192},
        "image_size": {"type": "integer", "minimum": 32, "maximum": 96},
        "crop_fraction": {"type": "number"}, "lr": {"type": "number"}, "temperature": {"type": "number"},
        "seed": {"type": "integer"}, "augment": _AUGMENT,
        "embed_after": {"type": "boolean", "description": "queue an embedding of the training surveys afterwards"},
        "evaluate": {"type": "boolean", "description": "evaluate after training (default true)"}}},
}

PATHS = {
    "/api/encoders/": {
        "get": {"summary": "All encoders with config, training time, evaluation metrics and embedding sets",
                "operationId": "listEncoders", "tags": ["encoders"],
                "responses": {**json_ok({"type": "object", "properties": {
                    "encoders": {"type": "array", "items": {"$ref": "#/components/schemas/Encoder"}}}})}},
        "post": {"summary": "Train a new encoder (curators): queues a train_encoder job on the gpu queue",
                 "operationId": "trainEncoder", "tags": ["encoders"],
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/TrainEncoderRequest"}}}},
                 "responses": {**_JOB_ACCEPTED, **error_responses(400, 403)}},
    },
    "/api/encoders/{encoder_id}/": {"get": {
        "summary": "One encoder", "operationId": "getEncoder", "tags": ["encoders"], "parameters": [_ENCODER_ID],
        "responses": {**json_ok({"$ref": "#/components/schemas/Encoder"}), **error_responses(404)}}},
    "/api/encoders/{encoder_id}/embed": {"post": {
        "summary": "Embed surveys into one shared embedding set with this encoder (curators)",
        "operationId": "embedWithEncoder", "tags": ["encoders"], "parameters": [_ENCODER_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["surveys"],
            "properties": {"surveys": {"type": "array", "items": {"type": "string"}}}}}}},
        "responses": {**_JOB_ACCEPTED, **error_responses(400, 403, 404, 409)}}},
}
