"""ml/ranking.py: ranking anomaly candidates with a person's feedback (interest scores, artifact tags)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ml.anomaly import rank_normalise
from ml.ranking import (FeedbackConfig, PersonalRanker, count_interesting, rank_with_feedback,
                        simulate_review_session)

pytestmark = pytest.mark.unit

FAST = FeedbackConfig(n_trees=30, metric="l2", regressor="forest")  # random forest
FAST_KNN = FeedbackConfig(n_trees=30, metric="l2", regressor="knn")  # kernel regression (default)


def survey_with_boring_extremes(seed: int = 0):
    """Bulk galaxies, 100 extreme but boring outliers, 30 mild but interesting ones.

    The raw anomaly score (distance from the centre) puts all 100 boring ones first."""
    rng = np.random.default_rng(seed)
    d = 16
    e1, e2 = np.eye(d)[0], np.eye(d)[1]
    x = np.concatenate([rng.normal(size=(1500, d)),
                        12 * e1 + 0.5 * rng.normal(size=(100, d)),    # boring, extreme
                        7 * e2 + 0.5 * rng.normal(size=(30, d))])      # interesting, mild
    interesting = np.zeros(len(x), bool)
    interesting[-30:] = True
    return x.astype(np.float32), np.linalg.norm(x, axis=1), interesting


@pytest.mark.parametrize("regressor", ["knn", "forest"])
def test_feedback_finds_more_interesting_than_the_raw_score(regressor):
    x, score, interesting = survey_with_boring_extremes()
    raw = count_interesting(np.argsort(-score), interesting, (50,))[50]
    cfg = FeedbackConfig(n_trees=30, metric="l2", regressor=regressor)
    order = simulate_review_session(x, score, lambda i: 5.0 if interesting[i] else 0.0,
                                    n_reviews=50, retrain_every=10, cfg=cfg)
    assert len(order) == 50 and len(set(order)) == 50
    personal = count_interesting(order, interesting, (50,))[50]
    assert raw == 0
    assert personal >= 25
    # never re-ranking (one batch of 50) is the raw order: the gain comes from feedback
    no_feedback = simulate_review_session(x, score, lambda i: 5.0 if interesting[i] else 0.0,
                                          n_reviews=50, retrain_every=50, cfg=cfg)
    assert count_interesting(no_feedback, interesting, (50,))[50] == raw


def test_astronomaly_formula_also_beats_the_raw_score():
    x, score, interesting = survey_with_boring_extremes(seed=1)
    cfg = FeedbackConfig(n_trees=30, metric="l2", formula="astronomaly")
    order = simulate_review_session(x, score, lambda i: 5.0 if interesting[i] else 0.0,
                                    n_reviews=60, retrain_every=10, cfg=cfg)
    assert count_interesting(order, interesting, (60,))[60] >= 10


def artifact_survey():
    """Bulk; an artifact-like blob A (rows 500-519) and an unrelated anomaly blob B (520-539),
    both at the same anomaly score."""
    rng = np.random.default_rng(5)
    d = 8
    x = np.concatenate([rng.normal(size=(500, d)),
                        6 * np.eye(d)[0] + 0.3 * rng.normal(size=(20, d)),
                        6 * np.eye(d)[1] + 0.3 * rng.normal(size=(20, d))]).astype(np.float32)
    score = np.zeros(len(x))
    score[500:] = 1.0 + 0.01 * rng.random(40)
    return x, score


@pytest.mark.parametrize("cfg", [FAST, FAST_KNN], ids=["forest", "knn"])
def test_artifact_tag_pushes_look_alikes_down(cfg):
    x, score = artifact_survey()
    ranker = PersonalRanker(x, score, cfg)
    # the person rated one member of A quite interesting (3) but tagged it "artifact"
    tagged, _ = ranker.rank([500], [3.0], [True])
    untagged, _ = ranker.rank([500], [3.0], [False])
    look_alikes = np.arange(501, 520)
    assert np.all(tagged[look_alikes] < 0.5 * untagged[look_alikes])
    # after tagging, the unrelated anomalies B outrank every look-alike of the artifact
    assert tagged[520:540].min() > tagged[look_alikes].max()


def test_ranking_excludes_scored_and_explains_with_nearest_scored():
    x, score = artifact_survey()
    # kernel regression: with 3 scores a forest is too noisy to order two blobs reliably
    ranking, why = rank_with_feedback(x, score, [500, 520, 3], [1.0, 5.0, 0.0],
                                      [False, False, False], FAST_KNN)
    assert np.all(np.isneginf(ranking[[500, 520, 3]]))
    assert np.isfinite(np.delete(ranking, [500, 520, 3])).all()
    assert why.neighbour_ids.shape == (len(x), 3)
    # a member of blob B: nearest scored galaxy is 520, scored 5
    info = why.for_galaxy(525)
    assert info["neighbours"][0]["id"] == 520 and info["neighbours"][0]["score"] == 5.0
    assert info["neighbours"][0]["distance"] <= info["neighbours"][1]["distance"]
    json.dumps(info)  # the UI gets it as JSON
    # the B blob (near a 5) outranks the A blob (near a 1) at equal anomaly score
    assert ranking[521:540].min() > ranking[501:520].max()


def test_cold_start_is_the_anomaly_rank_and_rescoring_keeps_the_last_score():
    x, score = artifact_survey()
    ranker = PersonalRanker(x, score, FAST)
    cold, why = ranker.rank([], [])
    np.testing.assert_allclose(cold, rank_normalise(score))
    assert why.neighbour_ids.shape == (len(x), 0)
    changed_mind, _ = ranker.rank([520, 520], [0.0, 5.0])
    only_last, _ = ranker.rank([520], [5.0])
    np.testing.assert_allclose(changed_mind, only_last)


def test_unknown_regressor_or_formula_is_rejected():
    x, score = artifact_survey()
    for bad in (dict(regressor="svm"), dict(formula="magic")):
        with pytest.raises(ValueError):
            rank_with_feedback(x, score, [1], [3.0], cfg=FeedbackConfig(metric="l2", **bad))


def test_knn_interest_reverts_to_neutral_far_from_scored_galaxies():
    x, score = artifact_survey()
    _, why = rank_with_feedback(x, score, [500, 501, 502], [0.0, 0.0, 0.0], cfg=FAST_KNN)
    assert why.predicted_score[503] < 1.0                     # a look-alike of three zeros
    far = np.argmax(why.neighbour_distances[:, 0])
    assert why.predicted_score[far] == pytest.approx(FAST.neutral_score, abs=0.15)
    assert why.uncertainty[far] > why.uncertainty[503]


def test_count_interesting_with_array_or_callable():
    flags = np.array([0, 1, 1, 0, 1], bool)
    assert count_interesting([1, 2, 0, 3, 4], flags, (1, 3, 5)) == {1: 1, 3: 2, 5: 3}
    assert count_interesting([4, 0], lambda i: i == 4, (1, 2)) == {1: 1, 2: 1}


def test_anomaly_power_sets_how_much_the_raw_score_still_counts():
    x, score = artifact_survey()
    score = score.copy()
    score[520:540] = np.linspace(-1.0, 2.0, 20)       # blob B: same look, anomaly ranks from low to top
    knn = dict(metric="l2", regressor="knn")
    plain, why = rank_with_feedback(x, score, [0], [0.0], cfg=FeedbackConfig(**knn, anomaly_power=1.0))
    flat, _ = rank_with_feedback(x, score, [0], [0.0], cfg=FeedbackConfig(**knn, anomaly_power=0.0))
    half, _ = rank_with_feedback(x, score, [0], [0.0], cfg=FeedbackConfig(**knn, anomaly_power=0.5))
    spread = lambda r: r[521:540].max() / r[521:540].min()  # noqa: E731  (row 520 has anomaly rank 0)
    assert spread(plain) > 20 and spread(flat) < 1.1    # power 0: predicted interest alone orders them
    np.testing.assert_allclose(half[520:540] / flat[520:540], np.sqrt(why.anomaly[520:540]), rtol=1e-6)
