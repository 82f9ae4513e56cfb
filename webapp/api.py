"""The JSON API: one django-ninja NinjaAPI with a router per app; the OpenAPI document is generated.

Each app's ``urls.py`` includes its own routes with ``app_urls(router)``, so the URLs keep
their app namespaces and names (``reverse("labeling:api_queue")``).  ``required_role`` is
set on a URL's view when every method on it needs a role (the authorisation matrix in
tests/hostile reads it, as it reads ``role_required`` on plain views).
"""
from __future__ import annotations

import json

import pydantic
from django.urls import URLPattern, path as django_path
from ninja import NinjaAPI
from ninja.responses import NinjaJSONEncoder
from ninja.utils import normalize_path, replace_path_param_notation

from webapp.anomalies.api import router as anomalies_router
from webapp.anomalies.services.reviews import NothingToUndo
from webapp.apikit import JsonBody, Login, _reraise, install_error_handlers, required_role
from webapp.catalog.api import router as catalog_router
from webapp.embeddings.api_collections import router as collections_router
from webapp.embeddings.api_encoders import router as encoders_router
from webapp.embeddings.api_map import router as map_router
from webapp.embeddings.api_search import NotFound, router as search_router
from webapp.embeddings.services import search, upload
from webapp.jobs.api import router as jobs_router
from webapp.labeling.api import router as labeling_router
from webapp.labeling.services.finetune import FinetuneError
from webapp.labeling.services.picking import QueueUnavailable
from webapp.labeling.services.rounds import RoundError

PREFIX = "api/"

api = NinjaAPI(
    title="Latent Sky API", version="1.0",
    description="JSON API of Latent Sky. Every endpoint needs either a personal API token "
                "(Authorization: Bearer lsk_..., created on the account page; a read-only token may only GET) "
                "or a logged-in session (cookie), whose writes also need the CSRF token in X-CSRFToken. "
                "Errors are {\"error\": message} with the status.",
    auth=Login(), parser=JsonBody(), docs_url=None, openapi_url=None, urls_namespace="api",
)
for tag, router in [("catalog", catalog_router), ("jobs", jobs_router), ("encoders", encoders_router),
                    ("map", map_router), ("search", search_router), ("collections", collections_router),
                    ("anomalies", anomalies_router), ("labeling", labeling_router)]:
    api.add_router("", router, tags=[tag])
# Which routers each app's URL namespace serves (composed with its pages in webapp/urls.py).
APP_ROUTERS = {"catalog": [catalog_router], "jobs": [jobs_router],
               "embeddings": [encoders_router, map_router, search_router, collections_router],
               "anomalies": [anomalies_router], "labeling": [labeling_router]}

# Service errors are ValueError subclasses with a readable message: bad input (400) unless listed.
install_error_handlers(api, [
    (pydantic.ValidationError, 0),  # replaced below: a response that fails its schema is our bug (500)
    (NothingToUndo, 409), (RoundError, 409), (FinetuneError, 409), (QueueUnavailable, 409),
    (search.GalaxyNotInSet, 404), (NotFound, 404),
    (upload.EncoderUnavailable, 503),
    (ValueError, 400),
])
api.add_exception_handler(pydantic.ValidationError, _reraise)


def app_urls(router) -> list[URLPattern]:
    """The URL patterns of one app's router: one per path, named by its operations' url_name."""
    bound = next((b for b in api._get_bound_routers() if b.template is router), None)
    if bound is None:
        raise LookupError(f"{router!r} is not mounted on the API")
    patterns = []
    for path, path_view in bound.path_operations.items():
        route = normalize_path(PREFIX + replace_path_param_notation(path)).lstrip("/")
        name = next((op.url_name for op in path_view.operations if getattr(op, "url_name", None)), None)
        view = path_view.get_view()
        view.http_methods = sorted({m for op in path_view.operations for m in op.methods})
        roles = {required_role(op) for op in path_view.operations}
        if len(roles) == 1 and None not in roles:
            view.required_role = roles.pop()
        patterns.append(django_path(route, view, name=name))
    return patterns


def build_schema() -> dict:
    """The OpenAPI 3.1 document of every operation (served at /api/openapi.json)."""
    schema = json.loads(json.dumps(api.get_openapi_schema(path_prefix="/" + PREFIX), cls=NinjaJSONEncoder))
    # Every operation also takes a Bearer token (checked by Login, webapp/apikit.py): either scheme will do.
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["Bearer"] = {
        "type": "http", "scheme": "bearer", "description": "a personal API token, lsk_<prefix>_<secret>"}
    for operations in schema["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation["security"] = operation["security"] + [{"Bearer": []}]
    return schema  # plain JSON types ("200", not 200)
