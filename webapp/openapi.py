"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Each app describes its own endpoints in ``webapp/<app>/openapi*.py`` (see MODULES) as two dicts,
``PATHS`` (OpenAPI path items) and optionally ``SCHEMAS`` (components); this module
merges them.  Written by hand rather than generated (drf-spectacular) because the
views are plain Django function views, not DRF; tests/deploy/test_openapi.py checks
that every documented path resolves and every /api/ URL is documented.
"""
from __future__ import annotations

from importlib import import_module

from django.http import JsonResponse

MODULES = ("catalog.openapi", "jobs.openapi", "embeddings.openapi_encoders", "embeddings.openapi_map",
           "anomalies.openapi", "labeling.openapi")

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def error_responses(*codes: int) -> dict:
    """Standard JSON error responses, e.g. ``error_responses(400, 404)``."""
    text = {400: "Bad input (the message says what was wrong)", 401: "Not logged in",
            403: "The user's role does not allow this", 404: "No such object",
            409: "Conflicts with the current state", 413: "Upload too large"}
    return {str(c): {"description": text.get(c, "Error"),
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def json_ok(schema: dict, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def build_schema() -> dict:
    paths: dict = {}
    schemas: dict = {"Error": ERROR_SCHEMA}
    for name in MODULES:
        try:
            module = import_module(f"webapp.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"webapp.{name}":
                raise
            continue
        paths.update(getattr(module, "PATHS", {}))
        schemas.update(getattr(module, "SCHEMAS", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Latent Sky API", "version": "1.0",
                 "description": "JSON API of Latent Sky. Every endpoint needs a logged-in session "
                                "(cookie); writes also need the CSRF token in X-CSRFToken."},
        "servers": [{"url": "/"}],
        "components": {"schemas": schemas,
                       "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "sessionid"}}},
        "security": [{"session": []}],
        "paths": dict(sorted(paths.items())),
    }


def openapi_view(request):
    return JsonResponse(build_schema(), json_dumps_params={"indent": 1})
