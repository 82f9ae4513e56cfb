"""Authorisation matrix: every URL the site serves, for anonymous and every role.

The URL list is read from the resolver, so endpoints added later are covered
without editing this file.  A write endpoint is a view decorated with
``role_required(role)`` (webapp.accounts.roles), which records ``required_role``.

- Anonymous users get the login page (HTML) or 401 (API) everywhere except the
  few open paths, and change nothing.
- Below the required role: 403 and nothing changes.  At or above it: the role
  check passes (the request may still fail validation with 400/404).
- Views without a role requirement are read-only: a viewer's POST changes no row.
- With CSRF checks on, a POST without the token is refused (403) for every write.
"""
from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.test import Client

from tests.urlconf import url_routes
from webapp.accounts.roles import ROLES, role_rank

pytestmark = pytest.mark.integration

# open by design (admin has its own login; samp/t/ is authorised by a signed token)
OPEN = ("accounts/login/", "healthz", "admin/", "samp/t/")
SKIP_PREFIXES = ("admin/", "static/", "accounts/logout/")  # Django's own, tested by Django


def _walk():
    for route, callback in url_routes():
        yield route.lstrip("^").rstrip("$"), callback


def _concrete(route: str) -> str:
    route = re.sub(r"<int:[^>]+>", "987654", route)
    route = re.sub(r"<(?:slug|str|path|uuid):[^>]+>|<[^:>]+>", "no-such-thing", route)
    return "/" + route.replace("\\", "")


def _endpoints():
    seen = set()
    for route, callback in _walk():
        if route.startswith(SKIP_PREFIXES) or route == "":
            continue
        url = _concrete(route)
        if url in seen:
            continue
        seen.add(url)
        yield url, getattr(callback, "required_role", None)


ENDPOINTS = sorted(_endpoints())
WRITES = [(u, r) for u, r in ENDPOINTS if r]


def _row_counts() -> dict:
    return {m._meta.label: m.objects.count() for m in apps.get_models()
            if m._meta.label not in {"sessions.Session", "admin.LogEntry"}}


def test_the_matrix_sees_the_write_endpoints():
    assert len(WRITES) >= 3, WRITES
    assert {r for _, r in WRITES} <= set(ROLES)


def _is_open(url: str) -> bool:
    return url.lstrip("/").startswith(OPEN)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u, _ in ENDPOINTS if _is_open(u)])
def test_open_pages_answer_anonymous_users_without_the_login_redirect(url):
    """The pages open by design, asserted as such rather than skipped."""
    response = Client().get(url)
    assert response.status_code < 500, (url, response.status_code)
    assert not (response.status_code == 302 and response["Location"].startswith("/accounts/login/")), url


@pytest.mark.django_db
@pytest.mark.parametrize("url,role", [(u, r) for u, r in ENDPOINTS if not _is_open(u)])
def test_anonymous_gets_login_or_401_and_changes_nothing(url, role):
    client = Client()
    before = _row_counts()
    for method in (client.get, client.post):
        response = method(url)
        if url.startswith("/api/"):
            assert response.status_code == 401, (url, response.status_code)
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], (url, response.status_code)
    assert _row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("url,required", WRITES)
def test_write_endpoints_enforce_their_role(url, required, role_clients):
    for role in ROLES:
        before = _row_counts()
        response = role_clients[role].post(url, data={}, HTTP_ACCEPT="application/json")
        if response.status_code == 405:  # a role-guarded read (e.g. a labeler's queue): check GET
            response = role_clients[role].get(url, HTTP_ACCEPT="application/json")
        if role_rank(role) < role_rank(required):
            assert response.status_code == 403, f"{role} POST {url} -> {response.status_code} (needs {required})"
            assert _row_counts() == before, f"{role} POST {url} changed rows despite 403"
        else:
            assert response.status_code != 403, f"{role} POST {url} was refused (needs {required})"
            assert response.status_code < 500, f"{role} POST {url} -> {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u, r in ENDPOINTS if not r and not u.lstrip("/").startswith(OPEN)])
def test_views_without_a_role_requirement_are_read_only(url, role_clients):
    before = _row_counts()
    response = role_clients["viewer"].post(url, data={"name": "x", "galaxy_ids": "1"})
    assert response.status_code < 500, f"viewer POST {url} -> {response.status_code}"
    assert _row_counts() == before, f"viewer POST {url} changed rows but the view declares no role"


@pytest.mark.django_db
@pytest.mark.parametrize("url,required", WRITES)
def test_writes_need_the_csrf_token(url, required, make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("admin", "csrf-admin"))
    before = _row_counts()
    response = client.post(url, data={})
    if response.status_code == 405:
        pytest.skip(f"{url} takes no POST")
    assert response.status_code == 403, f"POST {url} without a CSRF token -> {response.status_code}"
    assert _row_counts() == before


# ----------------------------------------------------------------- API tokens

API_ENDPOINTS = [(u, r) for u, r in ENDPOINTS if u.startswith("/api/")]
API_WRITES = [(u, r) for u, r in API_ENDPOINTS if r]
# Methods of each API URL (webapp.api.app_urls records them); /api/openapi.json is a plain GET view.
API_METHODS = {_concrete(route): set(getattr(cb, "http_methods", None) or ["GET", "POST"])
               for route, cb in _walk() if route.startswith("api/")}


@pytest.fixture
def role_tokens(make_user):
    """A Bearer header per role (a fresh user each), plus expired, revoked and read-only admin tokens."""
    from datetime import timedelta

    from django.utils import timezone

    from webapp.accounts.tokens import create_token, revoke_token

    headers = {}
    for role in ROLES:
        headers[role] = create_token(make_user(role, f"tok-{role}"), "matrix")[1]
    admin = make_user("admin", "tok-admin-2")
    expired, headers["expired"] = create_token(admin, "expired", expires_in_days=1)
    expired.expires_at = timezone.now() - timedelta(minutes=1)
    expired.save()
    revoked, headers["revoked"] = create_token(admin, "revoked")
    revoke_token(admin, revoked.pk)
    headers["read-only"] = create_token(admin, "read-only", read_only=True)[1]
    return {k: {"HTTP_AUTHORIZATION": f"Bearer {v}", "HTTP_ACCEPT": "application/json"} for k, v in headers.items()}



def test_the_matrix_sees_the_api_endpoints():
    assert len(API_ENDPOINTS) >= 20 and len(API_WRITES) >= 10, (len(API_ENDPOINTS), len(API_WRITES))
    assert sum("POST" in API_METHODS[u] for u, _ in API_ENDPOINTS) >= 10


@pytest.mark.django_db
@pytest.mark.parametrize("url,required", API_WRITES)
def test_api_writes_enforce_the_token_owners_role_without_csrf(url, required, role_tokens):
    client = Client(enforce_csrf_checks=True)  # a token needs no CSRF token
    for role in ROLES:
        before = _row_counts()
        response = client.post(url, data="{}", content_type="application/json", **role_tokens[role])
        if response.status_code == 405:
            response = client.get(url, **role_tokens[role])
        if role_rank(role) < role_rank(required):
            assert response.status_code == 403, f"{role} token POST {url} -> {response.status_code} (needs {required})"
            assert _row_counts() == before, f"{role} token POST {url} changed rows despite 403"
        else:
            assert response.status_code not in (401, 403), f"{role} token POST {url} -> {response.status_code}"
            assert response.status_code < 500, f"{role} token POST {url} -> {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u, r in API_ENDPOINTS if not r])
def test_api_reads_accept_a_token_of_every_role(url, role_tokens):
    for role in ROLES + ("read-only",):
        response = Client().get(url, **role_tokens[role])
        assert response.status_code not in (401, 403), f"{role} token GET {url} -> {response.status_code}"
        assert response.status_code < 500, f"{role} token GET {url} -> {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u, _ in API_ENDPOINTS])
def test_expired_and_revoked_tokens_get_401_everywhere_and_change_nothing(url, role_tokens):
    before = _row_counts()
    for kind, reason in (("expired", "expired"), ("revoked", "revoked")):
        for method in ("get", "post"):
            response = getattr(Client(), method)(url, **role_tokens[kind])
            assert response.status_code == 401, f"{kind} token {method.upper()} {url} -> {response.status_code}"
            assert reason in response.json()["error"]
    assert _row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("url,method", [(u, m) for u, _ in API_ENDPOINTS
                                        for m in sorted(API_METHODS[u] - {"GET", "HEAD", "OPTIONS"})])
def test_read_only_tokens_cannot_write(url, method, role_tokens):
    before = _row_counts()
    response = Client().generic(method, url, data="{}", content_type="application/json", **role_tokens["read-only"])
    assert response.status_code == 403, f"read-only token POST {url} -> {response.status_code}"
    assert response.json() == {"error": "this token is read-only"}
    assert _row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u, _ in ENDPOINTS if not u.startswith("/api/") and not _is_open(u)][:400])
def test_pages_outside_the_api_refuse_tokens(url, role_tokens):
    response = Client().get(url, **role_tokens["admin"])
    assert response.status_code == 302 and "/accounts/login/" in response["Location"], (url, response.status_code)
