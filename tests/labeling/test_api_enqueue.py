"""GET /api/tasks/ and POST /api/tasks/<id>/enqueue (the map's lasso uses them)."""

import pytest

from tests.http import post_json
from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.labeling.models import QueueItem

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture
def task():
    return make_task(n=12)


def test_task_list_lists_id_name_kind_classes(role_clients, task):
    assert role_clients["anonymous"].get("/api/tasks/").status_code == 401
    data = role_clients["viewer"].get("/api/tasks/").json()
    assert [(t["id"], t["name"], t["kind"]) for t in data["tasks"]] == [(task.pk, "Morphology", "classification")]
    assert [c["name"] for c in data["tasks"][0]["classes"]] == ["elliptical", "spiral", "edge-on", "merger"]
    assert [c["key"] for c in data["tasks"][0]["classes"]] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("role,status", [("anonymous", 401), ("viewer", 403), ("labeler", 200),
                                         ("curator", 200), ("admin", 200)])
def test_enqueue_needs_the_labeler_role(role_clients, task, role, status):
    gid = Galaxy.objects.filter(survey__in=task.surveys.all()).first().pk
    response = post_json(role_clients[role], f"/api/tasks/{task.pk}/enqueue", {"galaxy_ids": [gid]})
    assert response.status_code == status
    assert QueueItem.objects.filter(task=task, galaxy_id=gid, source="manual").exists() == (status == 200)


def test_enqueue_reports_counts_and_rejects_bad_input(role_clients, task):
    c = role_clients["labeler"]
    ids = list(Galaxy.objects.filter(survey__in=task.surveys.all()).values_list("pk", flat=True)[:3])
    data = post_json(c, f"/api/tasks/{task.pk}/enqueue", {"galaxy_ids": ids + [10**9]}).json()
    assert (data["enqueued"], data["ignored"]) == (3, 1)
    assert data["label_url"] == f"/tasks/{task.pk}/label/"
    for body, needle in [({"galaxy_ids": []}, "non-empty"), ({"galaxy_ids": ["x"]}, "must be an integer"),
                         ({}, "galaxy_ids is required")]:
        r = post_json(c, f"/api/tasks/{task.pk}/enqueue", body)
        assert r.status_code == 400 and needle in r.json()["error"]
    r = c.post(f"/api/tasks/{task.pk}/enqueue", data="{not json", content_type="application/json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert post_json(c, "/api/tasks/99999/enqueue", {"galaxy_ids": ids}).status_code == 404
