"""ml/anomaly.py: unsupervised anomaly scores (ranking with a person's feedback: test_ranking.py)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import LocalOutlierFactor

from ml.anomaly import (AnomalyConfig, combine_scores, knn_graph, knn_score, lof_score, rank_normalise,
                        score_all)

pytestmark = pytest.mark.unit

SMALL = AnomalyConfig(metric="l2", iforest_trees=100, gmm_components=3)


def gaussian_with_outlier(n: int = 300, d: int = 8, seed: int = 0) -> np.ndarray:
    """(n + 1, d) standard normal rows; the last row is planted 8 sigma away."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    return np.concatenate([x, np.full((1, d), 8.0 / np.sqrt(d) * 2)]).astype(np.float32)


@pytest.mark.parametrize("method", ["iforest", "knn", "lof", "gmm"])
def test_planted_outlier_gets_the_top_score(method):
    x = gaussian_with_outlier()
    score = score_all(x, AnomalyConfig(**{**SMALL.__dict__, "methods": (method,)}))[method]
    assert score.shape == (301,) and score.dtype == np.float32
    assert int(np.argmax(score)) == 300


def test_planted_outlier_found_with_cosine_metric():
    # cosine ignores length: plant an outlier in an unusual DIRECTION
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)) + np.array([6.0] + [0.0] * 7)
    x = np.concatenate([x, [[-6.0, 6.0, 0, 0, 0, 0, 0, 0]]]).astype(np.float32)
    scores = score_all(x, AnomalyConfig(iforest_trees=100, gmm_components=3))
    assert {k: int(np.argmax(v)) for k, v in scores.items()} == {
        "iforest": 300, "knn": 300, "lof": 300, "gmm": 300}


def test_lof_matches_sklearn():
    x = np.random.default_rng(2).normal(size=(200, 5)).astype(np.float32)
    dist, ids = knn_graph(x, 20, "l2")
    ours = lof_score(dist, ids, 20)
    theirs = -LocalOutlierFactor(n_neighbors=20).fit(x).negative_outlier_factor_
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_knn_graph_excludes_self_and_knn_score_is_mean_distance():
    x = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    dist, ids = knn_graph(x, 5, "l2")
    assert not np.any(ids == np.arange(50)[:, None])
    full = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(knn_score(dist, 5), np.sort(full, axis=1)[:, :5].mean(1), rtol=1e-4)


def test_knn_graph_handles_exact_duplicates():
    x = np.zeros((6, 3), np.float32)
    x[3:] = 1.0
    dist, ids = knn_graph(x, 2, "l2")
    assert not np.any(ids == np.arange(6)[:, None])
    np.testing.assert_allclose(dist, 0.0, atol=1e-6)


def test_score_all_reports_progress_and_rejects_unknown_methods():
    calls = []
    out = score_all(gaussian_with_outlier(), SMALL, progress=lambda *a: calls.append(a))
    assert sorted(out) == ["gmm", "iforest", "knn", "lof"]
    assert calls[-1][:2] == (4, 4)
    with pytest.raises(ValueError):
        score_all(gaussian_with_outlier(), AnomalyConfig(methods=("oneclass",)))


def test_rank_normalise_range_and_ties():
    r = rank_normalise(np.array([10.0, -3.0, 10.0, 7.0]))
    np.testing.assert_allclose(r, [5 / 6, 0.0, 5 / 6, 1 / 3])


def test_combine_scores_is_rank_based():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=100), rng.normal(size=100)
    mean = combine_scores({"a": a, "b": b}, "mean")
    # any increasing transform of a score (units, logs, huge values) changes nothing
    np.testing.assert_allclose(mean, combine_scores({"a": np.exp(a) * 1e6, "b": b - 50}, "mean"))
    np.testing.assert_allclose(mean, (rank_normalise(a) + rank_normalise(b)) / 2)
    mx = combine_scores({"a": a, "b": b}, how="max")
    assert np.all(mx >= mean) and mx.min() >= 0 and mx.max() == 1.0
    np.testing.assert_allclose(combine_scores({"a": a, "b": b}), mean)  # mean is the default
    # a detector blind to an anomaly cannot bury it under "max", but halves it under "mean"
    blind = {"sees": np.r_[np.zeros(99), 1.0], "blind": np.r_[np.ones(99), 0.0]}
    assert combine_scores(blind, "max")[-1] == 1.0 and combine_scores(blind)[-1] == 0.5
    assert combine_scores({"a": a}).max() == 1.0 and combine_scores({"a": a}).min() == 0.0
    with pytest.raises(ValueError):
        combine_scores({"a": a}, how="median")
    with pytest.raises(ValueError):
        combine_scores({})
