"""OpenAPI description of the catalogue endpoints (merged by webapp.openapi)."""
from webapp.openapi import error_responses, json_ok

GALAXY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "survey": {"type": "string"}, "source_id": {"type": "string"},
    "ra": {"type": ["number", "null"], "description": "degrees, ICRS"},
    "dec": {"type": ["number", "null"], "description": "degrees, ICRS"},
    "image_index": {"type": "integer"}, "metadata": {"type": "object"},
    "url": {"type": "string"}, "thumb_url": {"type": "string"}}}

SCHEMAS = {
    "Galaxy": GALAXY,
    "Survey": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"},
        "bands": {"type": "array", "items": {"type": "string"}}, "image_kind": {"type": "string"},
        "pixel_scale_arcsec": {"type": ["number", "null"]}, "psf_fwhm_arcsec": {"type": ["number", "null"]},
        "status": {"type": "string"}, "n_galaxies": {"type": "integer"},
        "image_shape": {"type": "array", "items": {"type": "integer"}}}},
}

PATHS = {
    "/api/surveys/": {"get": {
        "summary": "List surveys", "operationId": "listSurveys", "tags": ["catalog"],
        "responses": json_ok({"type": "object", "properties": {
            "surveys": {"type": "array", "items": {"$ref": "#/components/schemas/Survey"}}}})}},
    "/api/surveys/{slug}/galaxies/": {"get": {
        "summary": "A page of a survey's galaxies, sortable and filterable by metadata",
        "operationId": "listSurveyGalaxies", "tags": ["catalog"],
        "parameters": [
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "per", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "sort", "in": "query", "schema": {"type": "string"},
             "description": "source_id, ra, dec or a numeric metadata key; prefix - for descending"},
            {"name": "f", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
             "style": "form", "explode": True, "description": "filters such as mag_r<17 or class:spiral"}],
        "responses": {**json_ok({"type": "object", "properties": {
            "count": {"type": "integer"}, "page": {"type": "integer"}, "num_pages": {"type": "integer"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Galaxy"}}}}),
            **error_responses(400, 404)}}},
    "/api/galaxies/{galaxy_id}/": {"get": {
        "summary": "One galaxy with its catalogue metadata", "operationId": "getGalaxy", "tags": ["catalog"],
        "parameters": [{"name": "galaxy_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {**json_ok({"$ref": "#/components/schemas/Galaxy"}), **error_responses(404)}}},
    "/thumbs/{galaxy_id}.png": {"get": {
        "summary": "Thumbnail PNG (Lupton RGB, asinh for one band, or the source JPEG's colours)",
        "operationId": "getThumbnail", "tags": ["catalog"],
        "parameters": [
            {"name": "galaxy_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16, "maximum": 512}},
            {"name": "band", "in": "query", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "PNG image", "content": {"image/png": {}}},
                      "304": {"description": "Not modified (ETag)"},
                      **error_responses(400, 404)}}},
}
