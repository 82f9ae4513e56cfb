"""Anomaly pages and JSON: roles on every write endpoint, pages, queue JSON, exports, panel."""
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.anomalies.factories import make_score_set
from tests.http import post_json
from webapp.anomalies.models import PersonalRanking, Review
from webapp.anomalies.services import reviews
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture
def scored():
    return make_score_set()


def write_requests(score_set, ids):
    api = f"/api/anomalies/score-sets/{score_set.pk}"
    return {
        "review": (f"{api}/reviews/", {"galaxy_id": ids[0], "interest": 4}, "labeler", 201),
        "undo": (f"{api}/undo/", {"galaxy_id": ids[1]}, "labeler", 200),
        "rerank": (f"{api}/ranking/", {}, "labeler", 202),
        "score": ("/api/anomalies/score-sets/", {"embedding_set_id": score_set.embedding_set_id}, "curator", 202),
    }


@pytest.mark.parametrize("endpoint", ["review", "undo", "rerank", "score"])
def test_every_write_endpoint_checks_the_role(endpoint, scored, role_clients):
    score_set, ids = scored
    url, body, needs, ok = write_requests(score_set, ids)[endpoint]
    for role in ("labeler", "curator", "admin"):  # undo needs something to undo
        user = role_clients[role].session.get("_auth_user_id")
        from django.contrib.auth import get_user_model
        reviews.record_verdict(get_user_model().objects.get(pk=user), score_set, ids[1], 2, False)
    before = (Review.objects.count(), Job.objects.count())
    assert post_json(role_clients["anonymous"], url, body).status_code == 401
    assert post_json(role_clients["viewer"], url, body).status_code == 403
    assert post_json(role_clients["viewer"], url, body).json()["error"].startswith("This action needs")
    if needs == "curator":
        assert post_json(role_clients["labeler"], url, body).status_code == 403
    assert (Review.objects.count(), Job.objects.count()) == before  # refused requests change nothing
    for role in ("labeler", "curator", "admin") if needs == "labeler" else ("curator", "admin"):
        assert post_json(role_clients[role], url, body).status_code == ok, role


def test_score_form_page_needs_curator(scored, role_clients):
    score_set, _ = scored
    form = {"embedding_set": score_set.embedding_set_id, "methods": ["iforest", "knn"], "combine": "max"}
    assert role_clients["anonymous"].post("/anomalies/score", form).status_code == 302
    assert role_clients["labeler"].post("/anomalies/score", form).status_code == 403
    response = role_clients["curator"].post("/anomalies/score", form)
    job = Job.objects.get(kind="anomaly_scores")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {"embedding_set_id": score_set.embedding_set_id, "methods": ["iforest", "knn"], "combine": "max"}


def test_pages_render_for_viewers_and_redirect_anonymous(scored, role_clients):
    score_set, ids = scored
    for url in ("/anomalies/", f"/anomalies/{score_set.pk}/review/", f"/anomalies/{score_set.pk}/reviewed/"):
        assert role_clients["anonymous"].get(url).status_code == 302
        response = role_clients["viewer"].get(url)
        assert response.status_code == 200, url
    home = role_clients["viewer"].get("/anomalies/").content.decode()
    assert f"/anomalies/{score_set.pk}/review/" in home and "Score an embedding set" not in home
    assert "Score an embedding set" in role_clients["curator"].get("/anomalies/").content.decode()
    page = role_clients["viewer"].get(f"/anomalies/{score_set.pk}/review/").content.decode()
    assert 'data-can-review="0"' in page and "scoring needs the labeler role" in page
    page = role_clients["labeler"].get(f"/anomalies/{score_set.pk}/review/").content.decode()
    assert 'data-can-review="1"' in page and '<kbd>A</kbd> artifact' in page and "/static/js/anomalies.js" in page
    assert role_clients["viewer"].get("/anomalies/999/review/").status_code == 404


def test_review_api_round_trip(scored, role_clients):
    score_set, ids = scored
    labeler, api = role_clients["labeler"], f"/api/anomalies/score-sets/{score_set.pk}"
    queue = labeler.get(f"{api}/queue/?n=4&similar=2").json()
    first = queue["candidates"][0]["id"]
    reply = post_json(labeler, f"{api}/reviews/", {"galaxy_id": first, "interest": 5, "rerank_every": 2})
    assert reply.status_code == 201 and reply.json()["rerank_job"] is None
    assert reply.json()["counts"] == {"reviewed": 1, "interesting": 1, "artifacts": 0}
    assert first not in [c["id"] for c in labeler.get(f"{api}/queue/?n=4").json()["candidates"]]
    second = post_json(labeler, f"{api}/reviews/", {"galaxy_id": ids[5], "artifact": True, "rerank_every": 2}).json()
    assert second["rerank_job"]["kind"] == "anomaly_rerank"  # 2nd verdict with rerank_every=2
    assert labeler.get(f"{api}/ranking/").json()["pending_job"]["id"] == second["rerank_job"]["id"]
    undo = post_json(labeler, f"{api}/undo/", {"galaxy_id": ids[5]}).json()
    assert undo["verdict"] is None and undo["counts"]["artifacts"] == 0
    assert post_json(labeler, f"{api}/undo/", {"galaxy_id": ids[5]}).status_code == 409
    listed = labeler.get(f"{api}/reviews/?kind=interesting").json()
    assert [r["galaxy_id"] for r in listed["results"]] == [first]


@pytest.mark.parametrize("query, message", [
    ("?n=0", "n must be at least 1"), ("?n=x", "n must be an integer"), ("?rank_by=magic", "cannot rank by"),
    ("?exclude=1,a", "exclude must be comma-separated integers")])
def test_queue_rejects_bad_input(scored, role_clients, query, message):
    score_set, _ = scored
    response = role_clients["viewer"].get(f"/api/anomalies/score-sets/{score_set.pk}/queue/{query}")
    assert response.status_code == 400 and message in response.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"galaxy_id": 1, "interest": 9}, "interest must be at most 5"), ({"interest": 3}, "galaxy_id is required"),
    ({"galaxy_id": 10 ** 9, "interest": 3}, "not in score set"),
    ({"galaxy_id": 1, "interest": 3, "rerank_every": 0}, "rerank_every")])
def test_review_rejects_bad_input_and_stores_nothing(scored, role_clients, body, message):
    score_set, _ = scored
    response = post_json(role_clients["labeler"], f"/api/anomalies/score-sets/{score_set.pk}/reviews/", body)
    assert response.status_code == 400 and message in response.json()["error"]
    bad_json = role_clients["labeler"].post(f"/api/anomalies/score-sets/{score_set.pk}/reviews/", "{oops",
                                            content_type="application/json")
    assert bad_json.status_code == 400 and "the request body is not valid JSON" in bad_json.json()["error"]
    assert Review.objects.count() == 0


def test_queue_query_count_does_not_grow_with_batch_size(scored, role_clients):
    score_set, _ = scored
    viewer = role_clients["viewer"]
    url = f"/api/anomalies/score-sets/{score_set.pk}/queue/?similar=4&n="
    viewer.get(url + "1")  # warm caches (session, role, files)
    counts = []
    for n in (2, 12):
        with CaptureQueriesContext(connection) as ctx:
            assert viewer.get(url + str(n)).status_code == 200
        counts.append(len(ctx))
    assert counts[0] == counts[1]


def test_exports_have_ra_dec_and_only_the_interesting(scored, role_clients, make_user):
    score_set, ids = scored
    from django.contrib.auth import get_user_model
    lab = get_user_model().objects.get(username="labeler-user")
    for g, v in zip(ids[:4], [5, 4, 1, None]):
        reviews.record_verdict(lab, score_set, g, v, v is None)
    client = role_clients["labeler"]
    csv_text = client.get(f"/anomalies/{score_set.pk}/export.csv").content.decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("galaxy_id,survey,source_id,ra,dec,interest,artifact,kind")
    assert sorted(int(line.split(",")[0]) for line in lines[1:]) == sorted(ids[:2])
    assert "150.0" in csv_text and ",interesting," in csv_text
    from astropy.io.votable import parse_single_table
    response = client.get(f"/anomalies/{score_set.pk}/export.vot?kind=")
    assert response["Content-Type"] == "application/x-votable+xml"
    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert sorted(table["galaxy_id"].tolist()) == sorted(ids[:4])
    assert str(table["ra"].unit) == "deg" and str(table["dec"].unit) == "deg"
    assert sorted(table["kind"].tolist()) == ["artifact", "boring", "interesting", "interesting"]
    assert client.get(f"/anomalies/{score_set.pk}/export.csv?kind=weird").status_code == 400
    # someone else's list is their own; "all" averages everyone
    other = role_clients["curator"].get(f"/anomalies/{score_set.pk}/export.csv").content.decode()
    assert other.strip().count("\n") == 0
    everyone = role_clients["curator"].get(f"/anomalies/{score_set.pk}/export.csv?scope=all").content.decode()
    assert everyone.strip().count("\n") == 2


def test_reviewed_page_filters_by_kind_score_and_method(scored, role_clients):
    score_set, ids = scored
    from django.contrib.auth import get_user_model
    lab = get_user_model().objects.get(username="labeler-user")
    for g, v in zip(ids[:5], [5, 3, 1, 0, None]):
        reviews.record_verdict(lab, score_set, g, v, v is None)
    client = role_clients["labeler"]

    def listed(query):
        response = client.get(f"/anomalies/{score_set.pk}/reviewed/{query}")
        assert response.status_code == 200
        return sorted(int(x) for x in __import__("re").findall(r'data-galaxy="(\d+)"', response.content.decode()))
    assert listed("") == sorted(ids[:5])
    assert listed("?kind=artifact") == [ids[4]]
    assert listed("?min=1&max=3") == sorted(ids[1:3])
    top_lof = client.get(f"/api/anomalies/score-sets/{score_set.pk}/reviews/?method=lof&top=100").json()
    assert top_lof["count"] == 5
    assert client.get(f"/anomalies/{score_set.pk}/reviewed/?kind=nope").status_code == 400
    assert "Your discoveries" in client.get(f"/anomalies/{score_set.pk}/reviewed/").content.decode()


def test_galaxy_page_panel_shows_scores_and_my_verdict(scored, role_clients):
    score_set, ids = scored
    from django.contrib.auth import get_user_model
    lab = get_user_model().objects.get(username="labeler-user")
    reviews.record_verdict(lab, score_set, ids[50], 4, False)
    page = role_clients["labeler"].get(f"/galaxies/{ids[50]}/").content.decode()
    assert "Anomaly scores" in page and "4 / 5" in page and f"/anomalies/{score_set.pk}/review/?galaxy={ids[50]}" in page
    other = role_clients["viewer"].get(f"/galaxies/{ids[50]}/").content.decode()
    assert "You have not scored this galaxy" in other
    data = role_clients["labeler"].get(f"/api/anomalies/galaxies/{ids[50]}/").json()
    assert data["verdict"]["interest"] == 4 and set(data["scores"][0]["ranks"]) == {"iforest", "knn", "lof"}


def test_rerank_endpoint_returns_the_running_job_instead_of_a_second(scored, role_clients):
    score_set, _ = scored
    url = f"/api/anomalies/score-sets/{score_set.pk}/ranking/"
    a = post_json(role_clients["labeler"], url, {}).json()["job"]
    b = post_json(role_clients["labeler"], url, {}).json()["job"]
    assert a["id"] == b["id"] and PersonalRanking.objects.count() == 1


def test_score_set_list_json(scored, role_clients):
    score_set, _ = scored
    data = role_clients["viewer"].get("/api/anomalies/score-sets/").json()["score_sets"]
    assert [s["id"] for s in data] == [score_set.pk]
    assert data[0]["methods"] == ["iforest", "knn", "lof"] and data[0]["config"]["knn_k"] == 5


def test_score_columns_page_through_every_galaxy(client, make_user):
    """GET /api/anomalies/score-sets/<id>/scores/: the score file as columns, paged by offset."""
    score_set, ids = make_score_set()
    client.force_login(make_user("viewer"))
    url = f"/api/anomalies/score-sets/{score_set.pk}/scores/"
    first = client.get(url, {"limit": 50}).json()
    assert (first["total"], first["count"], first["next_offset"]) == (60, 50, 50)
    assert set(first["columns"]) == {"galaxy_id", "combined", "score_iforest", "rank_iforest", "score_knn",
                                     "rank_knn", "score_lof", "rank_lof"}
    rest = client.get(url, {"offset": 50, "limit": 50}).json()
    assert (rest["count"], rest["next_offset"]) == (10, None)
    assert first["columns"]["galaxy_id"] + rest["columns"]["galaxy_id"] == ids
    combined = first["columns"]["combined"] + rest["columns"]["combined"]
    assert all(0 <= c <= 1 for c in combined) and max(combined) > 0.9
    assert client.get(url, {"limit": 0}).json() == {"error": "limit must be at least 1"}
    assert client.get("/api/anomalies/score-sets/999/scores/").status_code == 404
