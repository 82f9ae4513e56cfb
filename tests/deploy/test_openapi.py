"""The OpenAPI document is generated from the API's types and lists every /api/ URL with its methods."""
import re

import pytest
from django.urls import resolve
from django.urls.exceptions import Resolver404

from tests.urlconf import url_routes
from webapp.openapi import build_schema

pytestmark = pytest.mark.unit
UNSAFE_OR_OTHER = ("get", "post", "put", "patch", "delete")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "x", path)


def _api_patterns():
    """(route, view) for every URL pattern under api/ (the schema itself excluded)."""
    return ((route, view) for route, view in url_routes()
            if route.startswith("api/") and route != "api/openapi.json")


def test_every_documented_path_resolves_to_a_view():
    schema = build_schema()
    assert schema["openapi"] == "3.1.0"
    for path in schema["paths"]:
        try:
            resolve(_concrete(path))
        except Resolver404:
            pytest.fail(f"{path} is documented but no URL matches it")


def test_every_api_url_is_documented_with_its_methods():
    documented = {re.sub(r"\{[^}]+\}", "{}", p): {m for m in ops if m in UNSAFE_OR_OTHER}
                  for p, ops in build_schema()["paths"].items()}
    routes = list(_api_patterns())
    assert len(routes) >= 40
    for route, view in routes:
        normal = "/" + re.sub(r"<[^>]+>", "{}", route)
        assert normal in documented, f"/{route} is served but missing from the OpenAPI document"
        served = {m.lower() for m in getattr(view, "http_methods", ())}
        assert served, f"/{route} is not a typed API operation"
        assert documented[normal] == served, f"/{route}: serves {served}, documents {documented[normal]}"


@pytest.mark.django_db
def test_undocumented_methods_are_refused(role_clients):
    admin = role_clients["admin"]
    for route, view in _api_patterns():
        url = "/" + re.sub(r"<[^>]+>", "987654", route)
        for method in set(UNSAFE_OR_OTHER) - {m.lower() for m in view.http_methods}:
            assert getattr(admin, method)(url).status_code == 405, (method, url)


def test_operations_have_summaries_and_typed_success_responses():
    for path, ops in build_schema()["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, f"{method} {path} declares no success response"
            assert any("content" in op["responses"][c] for c in ok), f"{method} {path}: untyped success response"


def test_errors_share_one_schema():
    schema = build_schema()
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    label = schema["paths"]["/api/tasks/{task_id}/labels"]["post"]
    assert label["responses"]["403"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "requestBody" in label


def test_schema_is_served_to_logged_in_users_only(client, make_user):
    assert client.get("/api/openapi.json").status_code in (302, 401, 403)
    client.force_login(make_user("viewer"))
    data = client.get("/api/openapi.json").json()
    assert "/api/galaxies/{galaxy_id}/" in data["paths"]


def test_schema_names_are_unique():
    """Two schema classes of one name would share (overwrite) one OpenAPI component."""
    import collections

    import webapp.api  # noqa: F401 - every router imported
    from pydantic import BaseModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    names = collections.Counter(c.__name__ for c in subclasses(BaseModel) if c.__module__.startswith("webapp."))
    assert [n for n, count in names.items() if count > 1] == []
