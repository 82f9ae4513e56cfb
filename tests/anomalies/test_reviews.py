"""Verdicts: append-only history, latest per user counts, undo, validation, the re-rank trigger."""
import pytest

from tests.anomalies.factories import make_score_set
from webapp.anomalies.models import PersonalRanking, Review
from webapp.anomalies.services import ranking, reviews
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def scored():
    return make_score_set()


def test_verdicts_are_appended_and_the_latest_per_user_counts(scored, make_user):
    score_set, ids = scored
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")
    reviews.record_verdict(ann, score_set, ids[0], 2, False)
    reviews.record_verdict(ann, score_set, ids[0], 5, False)
    reviews.record_verdict(bob, score_set, ids[0], None, True)
    reviews.record_verdict(ann, score_set, ids[1], 0, False)
    assert Review.objects.count() == 4  # nothing overwritten
    ann_now = reviews.latest_verdicts(ann)
    assert {g: (v.interest, v.artifact) for g, v in ann_now.items()} == {ids[0]: (5, False), ids[1]: (0, False)}
    assert reviews.latest_verdicts(bob)[ids[0]].artifact is True
    by_user = reviews.verdicts_by_user()
    assert {u: sorted(v) for u, v in by_user.items()} == {ann.pk: sorted([ids[0], ids[1]]), bob.pk: [ids[0]]}
    row = Review.objects.filter(user=ann).order_by("created_at", "id").first()
    assert (row.user_id, row.interest, row.kind, row.score_set_id) == (ann.pk, 2, "score", score_set.pk)
    assert row.created_at is not None


def test_undo_pops_one_verdict_at_a_time_and_is_itself_recorded(scored, make_user):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    reviews.record_verdict(ann, score_set, ids[3], 3, False)
    reviews.record_verdict(ann, score_set, ids[3], 5, False)
    _, now = reviews.undo_verdict(ann, score_set, ids[3])
    assert now.interest == 3
    _, now = reviews.undo_verdict(ann, score_set, ids[3])
    assert now is None and ids[3] not in reviews.latest_verdicts(ann)
    with pytest.raises(reviews.NothingToUndo):
        reviews.undo_verdict(ann, score_set, ids[3])
    assert list(Review.objects.filter(user=ann).order_by("created_at", "id").values_list("kind", flat=True)) == [
        "score", "score", "undo", "undo"]
    assert [h["kind"] for h in reviews.history(ann, ids[3])] == ["undo", "undo", "score", "score"]


@pytest.mark.parametrize("data, message", [
    ({"interest": 6}, "from 0 to 5"), ({"interest": -1}, "from 0 to 5"), ({"interest": "3"}, "whole number"),
    ({"interest": 2.5}, "whole number"), ({"interest": True}, "whole number"), ({}, "whole number"),
    ({"artifact": "yes"}, "true or false"), ({"artifact": True, "interest": 2}, "not both")])
def test_bad_verdicts_are_refused(data, message):
    with pytest.raises(reviews.ReviewError, match=message):
        reviews.parse_verdict(data)


def test_valid_verdicts_parse():
    assert reviews.parse_verdict({"interest": 0}) == (0, False)
    assert reviews.parse_verdict({"interest": 5, "artifact": False}) == (5, False)
    assert reviews.parse_verdict({"artifact": True}) == (None, True)


def test_galaxy_outside_the_set_is_refused(scored, make_user):
    score_set, ids = scored
    with pytest.raises(reviews.ReviewError, match="not in score set"):
        reviews.record_verdict(make_user("labeler"), score_set, max(ids) + 1000, 3, False)
    with pytest.raises(reviews.ReviewError, match="integer"):
        reviews.record_verdict(make_user("labeler", "x"), score_set, "abc", 3, False)


def test_counts(scored, make_user):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    for g, v in zip(ids[:5], [5, 4, 3, 0, None]):
        reviews.record_verdict(ann, score_set, g, v, v is None)
    assert reviews.review_counts(ann, score_set) == {"reviewed": 5, "interesting": 2, "artifacts": 1}


def test_rerank_starts_after_every_n_verdicts_and_never_twice_at_once(scored, make_user):
    score_set, ids = scored
    ann = make_user("labeler", "ann")
    started = []
    for i, g in enumerate(ids[:7]):
        reviews.record_verdict(ann, score_set, g, i % 6, False)
        started.append(ranking.maybe_rerank(ann, score_set, every=3) is not None)
    # 3rd verdict starts a job; while it is queued the 6th does not start another
    assert started == [False, False, True, False, False, False, False]
    assert PersonalRanking.objects.filter(user=ann).count() == 1
    job = Job.objects.get(kind="anomaly_rerank")
    assert job.params == {"ranking_id": PersonalRanking.objects.get(user=ann).pk} and job.launched_by == ann
    Job.objects.filter(pk=job.pk).update(status="succeeded")  # finished: 4 verdicts since -> a new job
    reviews.record_verdict(ann, score_set, ids[8], 1, False)
    assert ranking.maybe_rerank(ann, score_set, every=3) is not None
    assert Job.objects.filter(kind="anomaly_rerank").count() == 2
