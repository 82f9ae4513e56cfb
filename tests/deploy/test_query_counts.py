"""Issue 16: the JSON endpoints a labeller and a map user hit on every key press run a small,
fixed number of SQL queries, whatever the number of items one request returns (n = 1 vs 20 for
the labeling and anomaly queues, k = 5 vs 50 for neighbours, 5 vs 50 map points) and however many
labels are stored already.  test_bounded_requests.py compares N = 3,000 with 30,000 galaxies;
this file compares items per request, and pins each count under a budget so that a new query
per request is a conscious change.

Each request is made once first (sessions, role lookups, per-process caches and file maps warm),
then measured with CaptureQueriesContext.  Counts include the session and user lookups.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.anomalies.factories import make_score_set
from tests.deploy.test_bounded_requests import RowCounter
from tests.embeddings.map_factories import make_embedding_set, make_latent_map
from tests.http import post_json
from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.embeddings.services import map_data, search, sky
from webapp.labeling.models import Label
from webapp.labeling.services import queue

# the queue's refill job stays queued, as in production, rather than running inside the request
pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.refill_async,
              pytest.mark.usefixtures("fast_password_hashing")]

# queries per request, measured on SQLite and PostgreSQL (session + user + role lookups included)
BUDGET = {"label next": 19, "label post": 16, "label bulk": 16, "neighbours": 4, "map points": 3, "anomaly next": 9}


@pytest.fixture(autouse=True)
def _fresh_caches():
    search.forget_cached_indexes()
    sky.forget_cached_positions()
    map_data.forget_cached_layers()
    yield
    map_data.forget_cached_layers()


def count(send) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = send()
    return len(ctx), response


def by_size(client, url: str, sizes, returned) -> dict:
    """{size: queries of GET url + size}, after one warm-up request; ``returned(response)``, the
    items the response holds, must equal the size asked for."""
    client.get(url + str(sizes[0]))
    counts = {}
    for size in sizes:
        counts[size], response = count(lambda: client.get(url + str(size)))
        assert response.status_code == 200 and returned(response) == size, response.content[:300]
    return counts


def assert_fixed(name: str, counts: dict) -> None:
    """The same count for every size, within the endpoint's budget."""
    sizes = list(counts)
    assert len(set(counts.values())) == 1, f"{name}: queries grow with items per request: {counts}"
    assert counts[sizes[0]] <= BUDGET[name], f"{name}: {counts[sizes[0]]} queries, budget {BUDGET[name]}"


def queued_task(n: int = 60, batch: int = 48):
    """A task whose queue holds ``batch`` galaxies, as a worker's refill job leaves it."""
    task = make_task(n=n)
    assert queue.refill(task, batch=batch) == batch
    return task


def test_label_next_queries_do_not_grow_with_items_returned(role_clients):
    task = queued_task()
    counts = by_size(role_clients["labeler"], f"/api/tasks/{task.pk}/queue?n=", (1, 20),
                     lambda r: len(r.json()["items"]))
    assert_fixed("label next", counts)


def test_label_next_leases_each_item_once_across_people(role_clients):
    """The batched lease still hands a galaxy to one person only (votes_per_galaxy = 1)."""
    task = queued_task()
    url = f"/api/tasks/{task.pk}/queue?n=20"
    first = [i["galaxy_id"] for i in role_clients["labeler"].get(url).json()["items"]]
    second = [i["galaxy_id"] for i in role_clients["curator"].get(url).json()["items"]]
    assert len(first) == 20 and len(second) == 20
    assert set(first).isdisjoint(second)
    again = [i["galaxy_id"] for i in role_clients["labeler"].get(url).json()["items"]]
    assert again == first                                   # your own leases come back to you, in order


def test_label_post_queries_do_not_grow_with_labels_stored(role_clients):
    task = make_task(n=60)
    client = role_clients["labeler"]
    ids = list(Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index")
               .values_list("pk", flat=True))
    url = f"/api/tasks/{task.pk}/labels"
    assert post_json(client, url, {"galaxy_id": ids[0], "class_index": 0}).status_code == 201
    counts = {}
    counts["2nd label"], response = count(lambda: post_json(client, url, {"galaxy_id": ids[1], "class_index": 1}))
    assert response.status_code == 201
    user = response.wsgi_request.user
    Label.objects.bulk_create([Label(task=task, galaxy_id=g, user=user, kind="value", class_index=2)
                               for g in ids[2:42]])
    with RowCounter() as rows:
        counts["43rd label"], response = count(lambda: post_json(client, url, {"galaxy_id": ids[42],
                                                                                "class_index": 3}))
    assert response.status_code == 201 and response.json()["user"]["answered"] == 43
    assert_fixed("label post", counts)
    with RowCounter() as rows_before:      # the same post by a person with one label
        first = post_json(role_clients["curator"], url, {"galaxy_id": ids[50], "class_index": 0})
    assert first.status_code == 201 and first.json()["user"]["answered"] == 1
    assert rows.rows == rows_before.rows, "a label post reads rows per label the person has"


def test_neighbours_and_map_points_queries_do_not_grow_with_results(role_clients):
    es = make_embedding_set(n=60)
    lm = make_latent_map(es)
    client = role_clients["viewer"]
    galaxy = int(Galaxy.objects.filter(survey__in=es.surveys.all()).order_by("image_index").values_list(
        "pk", flat=True)[7])
    assert_fixed("neighbours", by_size(client, f"/api/search/neighbours/{galaxy}?k=", (5, 50),
                                       lambda r: len(r.json()["results"])))
    for extra in ("", "&layer=survey", "&format=bin"):
        returned = (lambda r: int(r["X-Count"])) if extra == "&format=bin" else (lambda r: r.json()["count"])
        assert_fixed("map points", by_size(client, f"/api/maps/{lm.pk}/points?bbox=-10,-10,10,10{extra}&limit=",
                                           (5, 50), returned))


def test_anomaly_next_queries_do_not_grow_with_items_returned(role_clients):
    score_set, _ = make_score_set()
    counts = by_size(role_clients["labeler"], f"/api/anomalies/score-sets/{score_set.pk}/queue/?n=", (1, 20),
                     lambda r: len(r.json()["candidates"]))
    assert_fixed("anomaly next", counts)


def test_bulk_label_post_queries_do_not_grow_with_rows(role_clients):
    """POST /labels/bulk looks its galaxies up together, inserts with one bulk_create and
    refreshes the queue with at most two UPDATEs: 2 rows cost what 20 rows cost."""
    task = queued_task(n=60, batch=48)
    client = role_clients["labeler"]
    ids = list(Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index")
               .values_list("pk", flat=True))
    url = f"/api/tasks/{task.pk}/labels/bulk"
    assert post_json(client, url, {"labels": [{"galaxy_id": ids[59], "class_index": 0}]}).status_code == 201
    counts, start = {}, 0
    for rows in (2, 20):
        body = {"labels": [{"galaxy_id": g, "class_index": k % 4} for k, g in enumerate(ids[start:start + rows])]}
        counts[rows], response = count(lambda: post_json(client, url, body))
        assert response.status_code == 201 and response.json()["stored"] == rows, response.content[:300]
        start += rows
    assert_fixed("label bulk", counts)
