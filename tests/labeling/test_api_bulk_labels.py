"""POST /api/tasks/<id>/labels/bulk: many answers (an expert's labels) in one request, all or none."""
import json

import pytest

from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services import labels, queue

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def task():
    return make_task(n=12)


def ids(task):
    return list(Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index").values_list("pk", flat=True))


def post(client, task, rows):
    return client.post(f"/api/tasks/{task.pk}/labels/bulk", data=json.dumps({"labels": rows}),
                       content_type="application/json")


@pytest.mark.parametrize("role,status", [("anonymous", 401), ("viewer", 403), ("labeler", 201),
                                         ("curator", 201), ("admin", 201)])
def test_bulk_labels_need_the_labeler_role(role_clients, task, role, status):
    response = post(role_clients[role], task, [{"galaxy_id": ids(task)[0], "class_index": 1}])
    assert response.status_code == status, response.content
    assert Label.objects.count() == (1 if status == 201 else 0)
    if status == 403:
        assert response.json() == {"error": "This action needs the labeler role."}


def test_bulk_labels_store_every_row_by_index_or_class_name(role_clients, task):
    g = ids(task)
    response = post(role_clients["labeler"], task, [
        {"galaxy_id": g[0], "class_index": 0}, {"galaxy_id": g[1], "class": "Spiral"},
        {"galaxy_id": g[2], "class": "merger", "class_index": 3}, {"galaxy_id": g[3], "kind": "unsure"}])
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["stored"] == 4 and len(data["label_ids"]) == 4
    rows = list(Label.objects.order_by("pk").values_list("galaxy_id", "kind", "class_index", "user__username"))
    assert rows == [(g[0], "value", 0, "labeler-user"), (g[1], "value", 1, "labeler-user"),
                    (g[2], "value", 3, "labeler-user"), (g[3], "unsure", None, "labeler-user")]
    assert [r[0] for r in Label.objects.filter(pk__in=data["label_ids"]).order_by("pk").values_list("galaxy_id")] \
        == g[:4]


def test_a_refused_row_stores_nothing_and_every_refused_row_is_named(role_clients, task, make_user):
    other = make_task(n=4, name="Other")
    g, outside = ids(task), ids(other)[0]
    response = post(role_clients["labeler"], task, [
        {"galaxy_id": g[0], "class_index": 0}, {"galaxy_id": g[1], "class": "blob"},
        {"galaxy_id": outside, "class_index": 1}, {"galaxy_id": g[2], "class_index": 9},
        {"galaxy_id": 10**9, "class_index": 1}])
    assert response.status_code == 400
    data = response.json()
    assert data["error"].startswith("4 of 5 labels were refused and none was stored: row 1: unknown class 'blob'")
    assert [(e["row"], e["galaxy_id"]) for e in data["errors"]] == [(1, g[1]), (2, outside), (3, g[2]), (4, 10**9)]
    assert "is not in a survey of task 'Morphology'" in data["errors"][1]["error"]
    assert "out of range" in data["errors"][2]["error"]
    assert Label.objects.count() == 0


def test_bulk_labels_validate_the_body(role_clients, task):
    client = role_clients["labeler"]
    assert post(client, task, []).json() == {"error": "labels must be non-empty"}
    bad = post(client, task, [{"galaxy_id": "x"}])
    assert bad.status_code == 400 and "labels[0].galaxy_id must be an integer" in bad.json()["error"]
    assert post(client, Task(pk=999), [{"galaxy_id": 1, "class_index": 0}]).status_code == 404


def test_bulk_values_on_a_regression_task(role_clients):
    task = make_task(n=6, name="Redshift", kind=Task.Kind.REGRESSION, classes=[], value_min=0.0, value_max=2.0)
    g = ids(task)
    ok = post(role_clients["labeler"], task, [{"galaxy_id": g[0], "value": 0.5}, {"galaxy_id": g[1], "value": 1.5}])
    assert ok.status_code == 201, ok.content
    assert sorted(Label.objects.values_list("value", flat=True)) == [0.5, 1.5]
    bad = post(role_clients["labeler"], task, [{"galaxy_id": g[2], "value": 3.0}, {"galaxy_id": g[3], "class": "a"}])
    assert [e["row"] for e in bad.json()["errors"]] == [0, 1]


def test_a_curator_stores_bulk_labels_as_a_source_like_an_import(role_clients, task):
    g = ids(task)
    body = {"labels": [{"galaxy_id": g[0], "class": "spiral"}, {"galaxy_id": g[1], "class_index": 0}],
            "source": "  GZ2   expert "}
    url = f"/api/tasks/{task.pk}/labels/bulk"
    refused = role_clients["labeler"].post(url, data=json.dumps(body), content_type="application/json")
    assert refused.status_code == 403
    assert refused.json() == {"error": "Storing labels as a source needs the curator role."}
    ok = role_clients["curator"].post(url, data=json.dumps(body), content_type="application/json")
    assert ok.status_code == 201 and ok.json()["source"] == "GZ2 expert"
    assert list(Label.objects.order_by("pk").values_list("galaxy_id", "class_index", "source", "user__username")) == [
        (g[0], 1, "GZ2 expert", "source:gz2-expert"), (g[1], 0, "GZ2 expert", "source:gz2-expert")]


def test_a_galaxy_named_twice_keeps_both_rows_and_the_later_counts_and_a_rerun_is_harmless(role_clients, task):
    queue.refill(task, batch=4)
    queued = list(QueueItem.objects.filter(task=task).order_by("rank").values_list("galaxy_id", flat=True))
    rows = [{"galaxy_id": queued[0], "class_index": 0}, {"galaxy_id": queued[1], "kind": "skip"},
            {"galaxy_id": queued[0], "class": "merger"}]
    first = post(role_clients["labeler"], task, rows)
    assert first.status_code == 201, first.content
    assert list(Label.objects.filter(pk__in=first.json()["label_ids"]).order_by("pk")
                .values_list("galaxy_id", "class_index")) == [(queued[0], 0), (queued[1], None), (queued[0], 3)]
    current = {gid: (a.kind, a.class_index) for (gid, _), a in labels.task_answers(task).items()}
    assert current == {queued[0]: ("value", 3), queued[1]: ("skip", None)}
    done = dict(QueueItem.objects.filter(task=task).values_list("galaxy_id", "done"))
    assert done == {queued[0]: True, queued[1]: False, queued[2]: False, queued[3]: False}   # a skip is no vote
    again = post(role_clients["labeler"], task, rows)                         # the same request once more
    assert again.status_code == 201 and Label.objects.count() == 6
    assert {gid: (a.kind, a.class_index) for (gid, _), a in labels.task_answers(task).items()} == current
    assert dict(QueueItem.objects.filter(task=task).values_list("galaxy_id", "done")) == done
