"""The OpenAPI schema describes the real API: documented paths resolve, /api/ URLs are documented."""
import re

import pytest
from django.urls import get_resolver, resolve
from django.urls.exceptions import Resolver404

from webapp.openapi import build_schema

pytestmark = pytest.mark.unit


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "x", path)


def test_every_documented_path_resolves_to_a_view():
    schema = build_schema()
    assert schema["openapi"] == "3.1.0"
    for path in schema["paths"]:
        try:
            resolve(_concrete(path))
        except Resolver404:
            pytest.fail(f"{path} is documented but no URL matches it")


def _api_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        route = prefix + str(p.pattern)
        if hasattr(p, "url_patterns"):
            yield from _api_patterns(p, route)
        elif route.startswith("api/") and route != "api/openapi.json":
            yield route


def test_every_api_url_is_documented():
    documented = {re.sub(r"\{[^}]+\}", "{}", p.lstrip("/")) for p in build_schema()["paths"]}
    for route in _api_patterns():
        normal = re.sub(r"<[^>]+>", "{}", route)
        assert normal in documented, f"/{route} is served but missing from the OpenAPI schema"


def test_schema_is_served_to_logged_in_users_only(client, make_user):
    assert client.get("/api/openapi.json").status_code in (302, 401, 403)
    client.force_login(make_user("viewer"))
    data = client.get("/api/openapi.json").json()
    assert "/api/galaxies/{galaxy_id}/" in data["paths"]
