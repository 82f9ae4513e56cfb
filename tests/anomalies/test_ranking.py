"""The personal re-rank: fitted on a person's verdicts, explained, and used by the queue."""
import numpy as np
import pytest

from tests.anomalies.factories import make_score_set
from webapp.anomalies.models import PersonalRanking
from webapp.anomalies.services import queue, ranking, reviews
from webapp.anomalies.services.files import load_ranking
from webapp.anomalies.services.ranking import current_ranking, request_rerank
from webapp.jobs import services as jobs
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
BULK, A, B = slice(0, 48), slice(48, 54), slice(54, 60)  # rows of blob_vectors()


def rerank(user, score_set):
    job = request_rerank(user, score_set)
    assert jobs.execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    return PersonalRanking.objects.get(job=job)


@pytest.fixture
def scored():
    return make_score_set()


def test_scores_pull_look_alikes_up_and_artifact_tags_push_them_down(scored, make_user):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    reviews.record_verdict(ann, score_set, ids[A][0], 5, False)     # blob A: remarkable
    reviews.record_verdict(ann, score_set, ids[B][0], None, True)   # blob B: artifact
    for g in ids[BULK][:6]:
        reviews.record_verdict(ann, score_set, g, 0, False)
    ranking = rerank(ann, score_set)
    assert (ranking.status, ranking.n_reviews) == ("ready", 8)
    assert ranking.config["regressor"] == "knn" and ranking.config["anomaly_power"] == 0.5 and ranking.seconds > 0
    arrays = load_ranking(ranking)
    assert all(isinstance(arrays[k], np.memmap) for k in ("order", "value"))   # read by row, never copied whole
    order = arrays["order"].tolist()
    assert len(order) == 60 - 8 and not set(order) & set(reviews.latest_verdicts(ann))
    a_rest, b_rest = ids[A][1:], ids[B][1:]
    a_pos = sorted(order.index(g) for g in a_rest)
    assert a_pos[3] < 5 and a_pos[4] < 10                           # the other A galaxies come first
    assert min(order.index(g) for g in b_rest) > max(order.index(g) for g in a_rest)
    # the queue follows the ranking and says why: the nearest scored galaxy of an A member is the 5
    data = queue.next_candidates(ann, score_set, n=3, n_similar=2)
    assert data["source"] == "personal" and data["ranking"]["n_reviews"] == 8
    first = data["candidates"][0]
    assert first["id"] in a_rest
    assert first["why"]["neighbours"][0]["id"] == ids[A][0] and first["why"]["neighbours"][0]["interest"] == 5.0
    assert first["why"]["predicted_interest"] > 2  # a forest on 8 verdicts: well above the 0s around it
    assert len(first["similar"]) == 2 and first["id"] not in [s["id"] for s in first["similar"]]


def test_later_verdicts_are_excluded_without_waiting_for_a_re_rank(scored, make_user):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    reviews.record_verdict(ann, score_set, ids[0], 1, False)
    rerank(ann, score_set)
    top = queue.next_candidates(ann, score_set, n=2, n_similar=0)["candidates"]
    reviews.record_verdict(ann, score_set, top[0]["id"], 4, False)
    after = queue.next_candidates(ann, score_set, n=2, n_similar=0)["candidates"]
    assert after[0]["id"] == top[1]["id"]
    held = queue.next_candidates(ann, score_set, n=2, n_similar=0, exclude=[top[1]["id"]])["candidates"]
    assert top[1]["id"] not in [c["id"] for c in held]


def test_cold_queue_is_the_anomaly_order_and_other_orders_work(scored, make_user):
    score_set, ids = scored
    ann = make_user("viewer", "ann")
    from webapp.anomalies.services.files import load_scores
    scores = load_scores(score_set)
    data = queue.next_candidates(ann, score_set, n=5, n_similar=0)
    assert data["source"] == "combined" and data["ranking"] is None
    assert [c["id"] for c in data["candidates"]] == scores.order("combined")[:5].tolist()
    lof = queue.next_candidates(ann, score_set, n=5, rank_by="lof", n_similar=0)
    assert [c["id"] for c in lof["candidates"]] == scores.order("lof")[:5].tolist()
    with pytest.raises(queue.QueueError, match="cannot rank by"):
        queue.next_candidates(ann, score_set, rank_by="gmm")
    with pytest.raises(queue.QueueError, match="between 1 and"):
        queue.next_candidates(ann, score_set, n=0)
    # "first" puts any galaxy in front (the galaxy page's "review in queue")
    first = queue.next_candidates(ann, score_set, n=3, n_similar=0, first=ids[7])["candidates"]
    assert first[0]["id"] == ids[7] and len(first) == 3


def test_candidate_json_has_what_the_page_shows_and_no_truth(scored, make_user):
    score_set, ids = scored
    data = queue.next_candidates(make_user("viewer"), score_set, n=1, n_similar=3)
    c = data["candidates"][0]
    assert c["image"].startswith(f"/thumbs/{c['id']}/composite-320-")  # content-addressed
    assert [b["name"] for b in c["bands"]] == ["g", "r", "i"] and f"/thumbs/{c['id']}/b2-" in c["bands"][2]["url"]
    assert c["ra_hms"] and c["dec_dms"] and c["metadata"]["label"]
    assert set(c["anomaly"]["ranks"]) == {"iforest", "knn", "lof"}
    assert "TRUTH-SECRET" not in str(data)
    assert data["remaining"] == 60 and data["counts"] == {"reviewed": 0, "interesting": 0, "artifacts": 0}


def test_survey_filter(make_user):
    score_set, ids = make_score_set()
    from webapp.catalog.models import Survey
    other = Survey.objects.create(name="Other", slug="other")
    ann = make_user("viewer")
    assert queue.next_candidates(ann, score_set, n=5, n_similar=0, survey=other)["candidates"] == []
    same = Survey.objects.get(slug="ano")
    assert len(queue.next_candidates(ann, score_set, n=5, n_similar=0, survey=same)["candidates"]) == 5


def test_failed_rerank_marks_the_ranking_failed_and_allows_a_new_one(scored, make_user, monkeypatch):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    from webapp.anomalies.services import ranking as ranking_service

    def broken(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ranking_service, "compute_ranking", broken)
    job = request_rerank(ann, score_set)
    assert jobs.execute_job(job.pk) == "failed"
    assert PersonalRanking.objects.get(job=job).status == "failed"
    assert current_ranking(ann, score_set) is None
    for g in ids[:2]:
        reviews.record_verdict(ann, score_set, g, 3, False)
    assert ranking.maybe_rerank(ann, score_set, every=2) is not None


def test_above_the_pool_size_a_rerank_scores_the_most_anomalous_with_the_same_values(scored, make_user, monkeypatch):
    """Bounded pool (issue 14): the pooled ranking is the full ranking restricted to the pool,
    value for value, followed by everyone else in the combined order; every candidate once."""
    from webapp.anomalies.services.files import load_scores
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    reviews.record_verdict(ann, score_set, ids[A][0], 5, False)
    reviews.record_verdict(ann, score_set, ids[BULK][0], 0, False)
    full = load_ranking(rerank(ann, score_set))
    monkeypatch.setattr(ranking, "RERANK_POOL", 20)
    pooled = load_ranking(rerank(ann, score_set))
    head = pooled["order"][:len(pooled["value"])].tolist()
    assert 18 <= len(head) <= 20          # the 20 most anomalous and the 2 reviewed rows, less the reviewed
    full_order, full_value = full["order"].tolist(), dict(zip(full["order"].tolist(), full["value"].tolist()))
    assert head == [g for g in full_order if g in set(head)]                    # same relative order
    assert pooled["value"].tolist() == pytest.approx([full_value[g] for g in head], rel=1e-5)
    assert sorted(pooled["order"].tolist()) == sorted(full_order)               # every candidate, once
    combined = [g for g in load_scores(score_set).order("combined").tolist() if g in set(full_order)]
    tail = pooled["order"][len(head):].tolist()
    assert tail == [g for g in combined if g not in set(head)]                 # the rest: combined order
    assert set(pooled["why_neighbours"].ravel().tolist()) <= {ids[A][0], ids[BULK][0]}


def test_queue_walks_the_order_in_growing_chunks_like_a_walk_over_the_whole_order():
    """_first_unreviewed and _position read a few ids at a time (issue 14) and answer what a
    pass over the whole order answers, across chunk boundaries (64, 128, ... 4096)."""
    rng = np.random.default_rng(0)
    order = rng.permutation(np.arange(10_000, 30_000, 2, dtype=np.int64))   # 10,000 ids
    skip = set(order[:5_000:3].tolist()) | set(order[6_000:6_300].tolist())
    allowed = lambda ids: ids % 3 != 0                                      # noqa: E731
    for n, flt in [(1, None), (7, None), (100, None), (1, allowed), (50, allowed), (20_000, allowed)]:
        naive = [(int(g), i) for i, g in enumerate(order.tolist())
                 if g not in skip and (flt is None or g % 3 != 0)][:n]
        assert queue._first_unreviewed(order, n, skip, flt) == naive
    assert queue._first_unreviewed(order, 3, set(order.tolist()), None) == []
    for position in (0, 63, 64, 191, 192, 5_000, 9_999):
        assert queue._position(order, int(order[position])) == position
    assert queue._position(order, 7) == len(order)


def test_a_ranking_written_before_the_column_files_still_loads(settings):
    """Rankings from before order.npy/value.npy hold every array inside ranking.npz."""
    from ml.atomic import save_npz_atomic
    from webapp.anomalies.services.files import _load_ranking, new_file
    path, relative = new_file("rank999", "ranking.npz")
    save_npz_atomic(path, order=np.array([5, 3, 9]), value=np.array([0.9, 0.5, 0.1], np.float32),
                    why_predicted=np.zeros(3, np.float32))
    arrays = _load_ranking(relative)
    assert arrays["order"].tolist() == [5, 3, 9] and sorted(arrays) == ["order", "value", "why_predicted"]
