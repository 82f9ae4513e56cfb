"""One body parser, one error mapping: every /api/ error is {"error": message} with its status."""
import json

import pytest
from django.db import OperationalError
from django.test import Client

from webapp.apikit import MAX_JSON_BODY

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
URL = "/api/collections/"


def post(client, body, **extra):
    return client.post(URL, body, content_type="application/json", **extra)


def test_body_errors(role_clients):
    viewer = role_clients["viewer"]
    r = post(viewer, "{nope")
    assert r.status_code == 400 and r.json()["error"].startswith("the request body is not valid JSON")
    r = post(viewer, "[1, 2]")
    assert r.status_code == 400 and r.json() == {"error": "the request body must be a JSON object"}
    r = post(viewer, json.dumps({"name": "x" * (MAX_JSON_BODY + 1)}))
    assert r.status_code == 413 and "the limit is" in r.json()["error"]


def test_validation_errors_name_the_field(role_clients):
    r = role_clients["labeler"].post("/api/tasks/1/labels", json.dumps({"galaxy_id": "seven"}),
                                     content_type="application/json")
    assert r.status_code in (400, 404)
    r = role_clients["viewer"].get("/api/jobs/?ids=1,x")
    assert r.status_code == 400 and r.json() == {"error": "ids must be comma-separated integers"}
    r = role_clients["viewer"].get("/api/anomalies/score-sets/?embedding_set=x")
    assert r.status_code == 400 and r.json()["error"].startswith("embedding_set must be an integer")


def test_roles_csrf_login_and_404_answer_json(make_user, role_clients):
    r = post(role_clients["viewer"], "{}").json()  # viewer may add: reaches validation of galaxy_ids
    assert "error" in r
    r = role_clients["viewer"].post("/api/tasks/1/rounds")
    assert r.status_code == 403 and r.json() == {"error": "This action needs the curator role."}
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("admin", "strict-admin"))
    r = post(strict, "{}")
    assert r.status_code == 403 and r.json() == {"error": "CSRF check Failed"}
    assert Client().get("/api/surveys/").json() == {"error": "authentication required"}
    r = role_clients["viewer"].get("/api/jobs/987654/")
    assert r.status_code == 404 and r.json()["error"]


def test_a_database_outage_is_a_retryable_503(role_clients, monkeypatch):
    from webapp.catalog.models import Survey

    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(Survey.objects, "all", down)
    r = role_clients["viewer"].get("/api/surveys/")
    assert r.status_code == 503 and r.json()["retry"] is True and r["Retry-After"] == "5"
