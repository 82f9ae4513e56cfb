"""OpenAPI description of the anomaly endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

SET_ID = {"name": "score_set_id", "in": "path", "required": True, "schema": {"type": "integer"}}
JOB = {"$ref": "#/components/schemas/AnomalyJob"}
COUNTS = {"type": "object", "properties": {"reviewed": {"type": "integer"}, "interesting": {"type": "integer"},
                                           "artifacts": {"type": "integer"}}}
RANKING = {"type": ["object", "null"], "properties": {
    "id": {"type": "integer"}, "n_reviews": {"type": "integer", "description": "verdicts it was fitted on"},
    "seconds": {"type": ["number", "null"]}, "created_at": {"type": "string", "format": "date-time"}}}
VERDICT = {"type": ["object", "null"], "properties": {
    "interest": {"type": ["integer", "null"], "minimum": 0, "maximum": 5}, "artifact": {"type": "boolean"},
    "at": {"type": "string", "format": "date-time"}, "review_id": {"type": "integer"}, "label": {"type": "string"}}}
SMALL_GALAXY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "source_id": {"type": "string"}, "url": {"type": "string"}, "thumb": {"type": "string"},
    "distance": {"type": "number", "description": "cosine distance in the embedding"},
    "interest": {"type": "number"}, "artifact": {"type": "boolean"}}}

SCHEMAS = {
    "AnomalyJob": {"type": "object", "description": "A Job (see /api/jobs/{job_id}/)", "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string"}, "status": {"type": "string"},
        "progress": {"type": "number"}, "message": {"type": "string"}}},
    "ScoreSet": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "embedding_set": {"type": "integer"},
        "status": {"type": "string", "enum": ["building", "ready", "failed"]}, "n": {"type": "integer"},
        "methods": {"type": "array", "items": {"type": "string", "enum": ["iforest", "knn", "lof", "gmm"]}},
        "combine": {"type": "string", "enum": ["max", "mean"]},
        "config": {"type": "object", "description": "AnomalyConfig: every method parameter"},
        "seconds": {"type": ["number", "null"]}, "created_at": {"type": "string", "format": "date-time"},
        "review_url": {"type": "string"}, "queue_url": {"type": "string"}}},
    "AnomalyCandidate": {"type": "object", "description": "Everything the review page shows for one galaxy",
                         "properties": {
        "id": {"type": "integer"}, "source_id": {"type": "string"}, "survey": {"type": "string"},
        "survey_name": {"type": "string"}, "ra": {"type": ["number", "null"], "description": "degrees, ICRS"},
        "dec": {"type": ["number", "null"], "description": "degrees, ICRS"}, "ra_hms": {"type": "string"},
        "dec_dms": {"type": "string"}, "metadata": {"type": "object"}, "url": {"type": "string"},
        "image": {"type": "string", "description": "large colour composite PNG"}, "thumb": {"type": "string"},
        "bands": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "url": {"type": "string"}}}},
        "anomaly": {"type": "object", "properties": {
            "combined": {"type": "number", "description": "combined rank in [0, 1], 1 = most anomalous"},
            "ranks": {"type": "object", "additionalProperties": {"type": "number"},
                      "description": "percentile rank per method"}}},
        "rank": {"type": "object", "properties": {"position": {"type": ["integer", "null"]},
                                                  "value": {"type": ["number", "null"]}}},
        "why": {"type": ["object", "null"], "description": "personal ranking: predicted interest and the "
                "nearest galaxies this person scored", "properties": {
            "predicted_interest": {"type": "number"}, "uncertainty": {"type": ["number", "null"]},
            "artifact_penalty": {"type": "number"}, "neighbours": {"type": "array", "items": SMALL_GALAXY}}},
        "similar": {"type": "array", "items": SMALL_GALAXY, "description": "nearest galaxies in the embedding"},
        "similar_note": {"type": "string"}, "verdict": VERDICT}},
    "ReviewedGalaxy": {"type": "object", "properties": {
        "galaxy_id": {"type": "integer"}, "survey": {"type": "string"}, "source_id": {"type": "string"},
        "ra": {"type": ["number", "null"]}, "dec": {"type": ["number", "null"]},
        "interest": {"type": ["number", "null"]}, "artifact": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["interesting", "unsure", "boring", "artifact", ""]},
        "n_reviewers": {"type": "integer"}, "reviewed_at": {"type": "string"}, "anomaly": {"type": "number"},
        "url": {"type": "string"}}, "additionalProperties": {"type": "number",
                                                              "description": "rank_<method> percentiles"}},
}

FILTERS = [
    {"name": "scope", "in": "query", "schema": {"type": "string", "enum": ["mine", "all"]}},
    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["interesting", "unsure", "boring", "artifact"]}},
    {"name": "min", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 5}},
    {"name": "max", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 5}},
    {"name": "method", "in": "query", "schema": {"type": "string"}, "description": "combined or a method name"},
    {"name": "top", "in": "query", "schema": {"type": "number"}, "description": "percent: the method's top N %"},
]

PATHS = {
    "/api/anomalies/score-sets/": {
        "get": {"summary": "Anomaly score sets, newest first", "operationId": "listScoreSets", "tags": ["anomalies"],
                "parameters": [{"name": "embedding_set", "in": "query", "schema": {"type": "integer"}}],
                "responses": json_ok({"type": "object", "properties": {
                    "score_sets": {"type": "array", "items": {"$ref": "#/components/schemas/ScoreSet"}}}})},
        "post": {"summary": "Start an anomaly_scores job on an embedding set (curator)", "operationId": "startScoring",
                 "tags": ["anomalies"],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["embedding_set_id"], "properties": {
                         "embedding_set_id": {"type": "integer"},
                         "methods": {"type": "array", "items": {"type": "string"}},
                         "combine": {"type": "string", "enum": ["max", "mean"]}, "name": {"type": "string"}}}}}},
                 "responses": {"202": {"description": "Job queued", "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"job": JOB}}}}}, **error_responses(400, 401, 403, 404)}}},
    "/api/anomalies/score-sets/{score_set_id}/queue/": {"get": {
        "summary": "The next unreviewed candidates for the logged-in person, best first",
        "operationId": "anomalyQueue", "tags": ["anomalies"],
        "parameters": [SET_ID,
                       {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                       {"name": "rank_by", "in": "query", "schema": {"type": "string"},
                        "description": "personal (default), combined, or a method name"},
                       {"name": "exclude", "in": "query", "schema": {"type": "string"},
                        "description": "comma-separated galaxy ids the page already holds"},
                       {"name": "survey", "in": "query", "schema": {"type": "string"}},
                       {"name": "similar", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 24}},
                       {"name": "first", "in": "query", "schema": {"type": "integer"},
                        "description": "put this galaxy first (reviewed or not)"}],
        "responses": {**json_ok({"type": "object", "properties": {
            "source": {"type": "string", "description": "personal, combined or a method"},
            "ranking": RANKING, "pending_job": {"oneOf": [JOB, {"type": "null"}]}, "counts": COUNTS,
            "remaining": {"type": "integer"}, "can_review": {"type": "boolean"},
            "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/AnomalyCandidate"}}}}),
            **error_responses(400, 401, 404)}}},
    "/api/anomalies/score-sets/{score_set_id}/reviews/": {
        "get": {"summary": "Reviewed galaxies of the set, filtered", "operationId": "listReviewed", "tags": ["anomalies"],
                "parameters": [SET_ID, *FILTERS],
                "responses": {**json_ok({"type": "object", "properties": {
                    "count": {"type": "integer"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/ReviewedGalaxy"}}}}),
                    **error_responses(400, 401, 404)}},
        "post": {"summary": "Record a verdict (labeler): interest 0-5 or artifact; append-only",
                 "operationId": "reviewCandidate", "tags": ["anomalies"], "parameters": [SET_ID],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["galaxy_id"], "properties": {
                         "galaxy_id": {"type": "integer"},
                         "interest": {"type": "integer", "minimum": 0, "maximum": 5},
                         "artifact": {"type": "boolean"},
                         "rerank_every": {"type": "integer", "minimum": 1, "maximum": 1000,
                                          "description": "start a re-rank after this many new verdicts (default 10)"}}}}}},
                 "responses": {"201": {"description": "Recorded", "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"review": {"type": "object"}, "counts": COUNTS,
                                                      "rerank_job": {"oneOf": [JOB, {"type": "null"}]}}}}}},
                     **error_responses(400, 401, 403, 404)}}},
    "/api/anomalies/score-sets/{score_set_id}/undo/": {"post": {
        "summary": "Retract the person's current verdict on a galaxy (labeler); appends an undo row",
        "operationId": "undoReview", "tags": ["anomalies"], "parameters": [SET_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["galaxy_id"], "properties": {"galaxy_id": {"type": "integer"}}}}}},
        "responses": {**json_ok({"type": "object", "properties": {
            "undo": {"type": "object"}, "verdict": VERDICT, "counts": COUNTS}}),
            **error_responses(400, 401, 403, 404, 409)}}},
    "/api/anomalies/score-sets/{score_set_id}/ranking/": {
        "get": {"summary": "The person's current personal ranking and any re-rank in progress",
                "operationId": "getRanking", "tags": ["anomalies"], "parameters": [SET_ID],
                "responses": {**json_ok({"type": "object", "properties": {
                    "ranking": RANKING, "pending_job": {"oneOf": [JOB, {"type": "null"}]}}}),
                    **error_responses(401, 404)}},
        "post": {"summary": "Re-rank now (labeler); returns the running job if one exists",
                 "operationId": "rerank", "tags": ["anomalies"], "parameters": [SET_ID],
                 "responses": {"202": {"description": "Job queued", "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"job": JOB}}}}}, **error_responses(400, 401, 403, 404)}}},
    "/api/anomalies/galaxies/{galaxy_id}/": {"get": {
        "summary": "A galaxy's anomaly scores in every ready score set, and the person's verdict and history",
        "operationId": "galaxyAnomalyScores", "tags": ["anomalies"],
        "parameters": [{"name": "galaxy_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {**json_ok({"type": "object", "properties": {
            "galaxy_id": {"type": "integer"},
            "scores": {"type": "array", "items": {"type": "object", "properties": {
                "score_set": {"type": "integer"}, "combined": {"type": "number"},
                "ranks": {"type": "object"}, "scores": {"type": "object"}}}},
            "verdict": VERDICT, "history": {"type": "array", "items": {"type": "object"}}}}),
            **error_responses(401)}}},
}
