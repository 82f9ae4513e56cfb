"""Anomaly scoring and personal re-ranking through a real ``celery worker``; concurrent reviews.

Runs on SQLite + the SQLAlchemy broker by default and on PostgreSQL + Redis when
DATABASE_URL / CELERY_BROKER_URL point there.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from django.test import Client

from tests.anomalies.factories import blob_vectors, make_embedding_set
from tests.integration.conftest import wait_for_job
from webapp.anomalies.models import PersonalRanking, Review, ScoreSet
from webapp.anomalies.services import reviews
from webapp.anomalies.services.scoring import start_scoring
from webapp.jobs.models import Job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
A, B = slice(48, 54), slice(54, 60)  # blob rows of blob_vectors()


@pytest.fixture
def roles(role_groups, fast_password_hashing):
    """The role groups and fast password hashing, for a transactional test."""


def scored_set(proc, user):
    es, ids = make_embedding_set(blob_vectors())
    job = start_scoring(es, user, methods=["iforest", "knn", "lof"])
    done = wait_for_job(job.pk, proc=proc)
    assert done.status == "succeeded", done.error
    return ScoreSet.objects.get(pk=done.result["score_set_id"]), ids


def test_scoring_and_re_ranking_run_on_a_real_worker(roles, celery_worker_proc, make_user):
    curator, labeler = make_user("curator", "cur"), make_user("labeler", "lab")
    score_set, ids = scored_set(celery_worker_proc, curator)
    assert (score_set.status, score_set.n) == ("ready", 60)

    client = Client()
    client.force_login(labeler)
    api = f"/api/anomalies/score-sets/{score_set.pk}"
    cold = client.get(f"{api}/queue/?n=5&similar=0").json()
    assert cold["source"] == "combined"
    # three verdicts with rerank_every=3: blob A is remarkable, blob B an artifact, the bulk dull
    verdicts = [(ids[A][0], {"interest": 5}), (ids[B][0], {"artifact": True}), (ids[0], {"interest": 0})]
    replies = [client.post(f"{api}/reviews/", json.dumps({"galaxy_id": g, "rerank_every": 3, **v}),
                           content_type="application/json").json() for g, v in verdicts]
    assert [r["rerank_job"] is None for r in replies] == [True, True, False]
    done = wait_for_job(replies[-1]["rerank_job"]["id"], proc=celery_worker_proc)
    assert done.status == "succeeded", done.error
    ranking = PersonalRanking.objects.get(job_id=done.pk)
    assert (ranking.status, ranking.n_reviews, done.result["n_reviews"]) == ("ready", 3, 3)

    warm = client.get(f"{api}/queue/?n=5&similar=0").json()
    assert warm["source"] == "personal" and warm["ranking"]["id"] == ranking.pk
    assert warm["candidates"][0]["id"] in ids[A]                       # look-alikes of the 5 first
    assert warm["candidates"][0]["why"]["neighbours"][0]["id"] == ids[A][0]
    assert not {c["id"] for c in warm["candidates"]} & {g for g, _ in verdicts}


class Reviewer:
    """A logged-in HTTP client (urllib) against the live server, with a CSRF cookie/header pair."""

    def __init__(self, base_url: str, user):
        client = Client()
        client.force_login(user)
        self.base, self.token = base_url, "a" * 32 + "b" * 32
        self.cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={self.token}"

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST", headers={
            "Content-Type": "application/json", "Cookie": self.cookie, "X-CSRFToken": self.token,
            "Referer": self.base + "/"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def test_two_users_scoring_in_parallel_lose_nothing(roles, celery_worker_proc, live_server, make_user):
    score_set, ids = scored_set(celery_worker_proc, make_user("curator", "cur"))
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")
    # each person reviews 24 galaxies from two browser tabs at once; the two people overlap on 12
    plan = {ann: [(g, i % 6) for i, g in enumerate(ids[:24])], bob: [(g, (i + 3) % 6) for i, g in enumerate(ids[12:36])]}
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def tab(reviewer, items):  # no ORM in here: threads would leave database connections open
        for galaxy_id, interest in items:
            out = reviewer.post(f"/api/anomalies/score-sets/{score_set.pk}/reviews/",
                                {"galaxy_id": galaxy_id, "interest": interest, "rerank_every": 5})
            with lock:
                results.append(out)

    threads = [threading.Thread(target=tab, args=(Reviewer(live_server.url, user), items[k::2]))
               for user, items in plan.items() for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [status for status, _ in results] == [201] * 48, [r for r in results if r[0] != 201][:3]
    assert Review.objects.count() == 48
    for user, items in plan.items():
        now = reviews.latest_verdicts(user)
        assert {g: v.interest for g, v in now.items()} == dict(items)
        assert reviews.review_counts(user, score_set)["reviewed"] == 24
    # re-ranks were started along the way (every 5 verdicts, never two at once per person) and all finish
    rerank_ids = [body["rerank_job"]["id"] for _, body in results if body.get("rerank_job")]
    assert len(rerank_ids) == len(set(rerank_ids)) >= 2
    for job_id in rerank_ids:
        assert wait_for_job(job_id, proc=celery_worker_proc).status == "succeeded"
    assert set(PersonalRanking.objects.values_list("user__username", flat=True)) == {"ann", "bob"}
    assert not Job.objects.filter(kind="anomaly_rerank").exclude(status="succeeded").exists()
