"""Schemathesis against the OpenAPI schema: generated requests to every documented
operation, as a logged-in admin and again with an admin's Bearer token (fewer examples),
must never produce a 5xx.

The live server runs on the test database with a small survey, so path ids hit
real rows as well as missing ones.  Example counts follow the hypothesis profile
(tests/hostile/conftest.py): a few per operation in `make test`, many in
`make reliability`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings as hyp_settings

from tests.catalog.factories import make_survey
from tests.hostile.conftest import FUZZ_COUNTS
from webapp.openapi import build_schema

schemathesis = pytest.importorskip("schemathesis")
pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin_session(live_server, make_user, transactional_db):
    make_survey(slug="sim-sdss", n=12)
    user = make_user("admin", "fuzz-admin")
    session = requests.Session()
    login = live_server.url + "/accounts/login/"
    session.get(login)
    token = session.cookies["csrftoken"]
    session.post(login, data={"username": user.username, "password": "pw-" + user.username,
                              "csrfmiddlewaretoken": token}, headers={"Referer": login})
    assert "sessionid" in session.cookies, "login failed"
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": live_server.url + "/"})
    return session


SKIP_DIRS = {"var", ".git", ".venv", "__pycache__", ".hypothesis", "node_modules", ".pytest_cache", "results"}


def _tree_snapshot(root: Path) -> dict[str, float]:
    """Every file under the project (outside the data directory) with its mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = os.path.join(folder, name)
            found[path] = os.stat(path).st_mtime
    return found


@pytest.fixture
def token_session(live_server, make_user, transactional_db):
    """A requests session that sends an admin's Bearer token and no cookie and no CSRF token."""
    from webapp.accounts.tokens import create_token

    make_survey(slug="sim-sdss", n=12)
    _, plain = create_token(make_user("admin", "fuzz-token-admin"), "schemathesis")
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {plain}"})
    return session


def _fuzz(live_server, session, examples: int, fuzz_key: str, statuses_refused: tuple = ()) -> None:
    before = _tree_snapshot(ROOT)
    schema = schemathesis.openapi.from_dict(build_schema())
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        label = f"{operation.method.upper()} {operation.path}"

        @hyp_settings(max_examples=examples, deadline=None)
        @given(case=operation.as_strategy())
        def run(case):
            FUZZ_COUNTS[fuzz_key] += 1
            response = case.call(base_url=live_server.url, session=session, timeout=30)
            if response.status_code >= 500 or response.status_code in statuses_refused:
                failures.append(f"{label} {case.path_parameters} {case.query} -> {response.status_code}: "
                                f"{response.text[:200]}")
        run()
    assert operations >= 5
    assert failures == [], "\n".join(failures[:20])
    after = _tree_snapshot(ROOT)
    written = sorted(p for p in after if before.get(p) != after[p] and not p.endswith((".pyc", ".partial")))
    assert written == [], f"requests wrote files outside the data directory: {written[:10]}"


def test_no_generated_request_gets_a_server_error(live_server, admin_session):
    _fuzz(live_server, admin_session, hyp_settings().max_examples // 4 or 5, "openapi")


def test_no_generated_token_request_gets_a_server_error_or_an_auth_refusal(live_server, token_session):
    """The same operations with an admin's Bearer token instead of a session: no 5xx, and no
    401/403 either (an admin token passes every role gate and needs no CSRF token)."""
    _fuzz(live_server, token_session, hyp_settings().max_examples // 10 or 2, "openapi-token", (401, 403))
