"""ml/anomaly.py blockwise path: bounded-memory scoring agrees with the exact whole-array path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from ml.anomaly import AnomalyConfig, knn_graph, lof_score, reference_rows, score_all
from ml.search import IndexConfig

pytestmark = pytest.mark.unit


def data(n: int = 6000, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d)) * 3
    x = centres[rng.integers(0, 20, n)] + rng.uniform(0.5, 1.5, (n, 1)) * rng.normal(size=(n, d))
    return x.astype(np.float32)


def test_blocks_do_not_change_exact_scores(tmp_path):
    x = data(3000)
    path = tmp_path / "x.npy"
    np.save(path, x)
    whole = score_all(x, AnomalyConfig(knn_block=10**9))
    blocked = score_all(np.load(path, mmap_mode="r"), AnomalyConfig(knn_block=700))  # memmap in, 5 blocks
    for name in whole:
        np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-4, atol=1e-5)


def test_compressed_knn_graph_agrees_with_exact_by_rank():
    x = data()
    exact_d, exact_i = knn_graph(x, 10, "cosine", exact_below=10**9)
    cfg = IndexConfig(kind="pq", exact_below=0, tune_recall=0.0, ivf_nprobe=16, pq_m=8, pq_nlist=64,
                      pq_kmeans_iter=5, pq_train_min=5000, query_threads=0)
    d, i = knn_graph(x, 10, "cosine", block=1000, index_cfg=cfg)
    assert d.shape == (6000, 10) and not np.any(i == np.arange(6000)[:, None])  # self excluded
    assert spearmanr(d.mean(axis=1), exact_d.mean(axis=1)).statistic >= 0.98
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, exact_i)])
    assert found >= 0.9


def test_compressed_path_through_score_all_ranks_like_the_exact_path():
    x = data()
    exact = score_all(x, AnomalyConfig(methods=("knn", "lof", "iforest")))
    cfg = AnomalyConfig(methods=("knn", "lof", "iforest"), knn_exact_below=0, knn_compressed_above=1,
                        knn_block=1000, iforest_fit_max=3000)
    blocked = score_all(x, cfg)
    assert spearmanr(blocked["knn"], exact["knn"]).statistic >= 0.98
    assert spearmanr(blocked["lof"], exact["lof"]).statistic >= 0.9
    # a forest fitted on half the rows agrees with the full fit as well as two full fits with
    # different seeds agree with each other (the ordering of ordinary rows is forest noise)
    reseeded = score_all(x, AnomalyConfig(methods=("iforest",), seed=1))["iforest"]
    noise = spearmanr(reseeded, exact["iforest"]).statistic
    assert spearmanr(blocked["iforest"], exact["iforest"]).statistic >= noise - 0.05
    assert dataclasses.asdict(cfg)["knn_block"] == 1000


def test_the_knn_graph_reports_progress_block_by_block():
    """A 10^7-row kNN pass takes an hour: the job's bar moves with every block, monotonically."""
    x = np.random.default_rng(4).normal(size=(3000, 8)).astype(np.float32)
    seen = []
    score_all(x, AnomalyConfig(methods=("iforest", "knn"), knn_block=1000, iforest_trees=10),
              progress=lambda done, total, message="": seen.append((done / total, message)))
    blocks = [(f, m) for f, m in seen if m.startswith("nearest neighbours")]
    assert [m.split(" of ")[0] for _, m in blocks] == ["nearest neighbours", "nearest neighbours",
                                                          "nearest neighbours"]
    assert "3,000 of 3,000 galaxies" in blocks[-1][1]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0.5 < blocks[0][0] < blocks[-1][0] <= 1.0


def test_a_reference_of_every_row_is_the_whole_set_graph():
    x = data(2000)
    reference = np.arange(2000)
    d0, i0 = knn_graph(x, 10, "l2", exact_below=10**9)
    d1, i1 = knn_graph(x, 10, "l2", exact_below=10**9, reference=reference)
    np.testing.assert_allclose(d1, d0, rtol=1e-5)
    np.testing.assert_allclose(lof_score(d1, i1, 10, reference), lof_score(d0, i0, 10), rtol=1e-5)


def test_lof_against_a_reference_sample_is_sklearns_novelty_lof():
    """Fitted on the reference rows, scoring every row: sklearn's LocalOutlierFactor(novelty=True)
    gives the reference rows' own factors (self excluded) and the others' score_samples."""
    from sklearn.neighbors import LocalOutlierFactor

    x = data(3000, d=8).astype(np.float64).astype(np.float32)
    reference = reference_rows(len(x), AnomalyConfig(knn_reference_max=800, seed=3))
    assert len(reference) == 800 and np.all(np.diff(reference) > 0)
    dist, ids = knn_graph(x, 20, "l2", exact_below=10**9, reference=reference)
    assert not np.any(reference[ids] == np.arange(3000)[:, None])          # never its own neighbour
    ours = lof_score(dist, ids, 20, reference)
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(x[reference])
    others = np.setdiff1d(np.arange(3000), reference)
    np.testing.assert_allclose(ours[reference], -lof.negative_outlier_factor_, rtol=1e-3)
    np.testing.assert_allclose(ours[others], -lof.score_samples(x[others]), rtol=1e-3)


def test_above_the_reference_size_scores_rank_like_the_whole_set_and_find_the_outliers():
    rng = np.random.default_rng(7)
    x = data(12_000)
    outliers = rng.choice(12_000, 30, replace=False)
    x[outliers] = rng.normal(size=(30, x.shape[1])).astype(np.float32) * 12   # far from every cluster
    methods = ("knn", "lof")
    whole = score_all(x, AnomalyConfig(methods=methods, knn_exact_below=10**9))
    cfg = AnomalyConfig(methods=methods, knn_exact_below=10**9, knn_reference_max=3000, knn_block=2500)
    sampled = score_all(x, cfg)
    for name in methods:
        assert spearmanr(sampled[name], whole[name]).statistic >= 0.9, name
        top = np.argsort(-sampled[name])[:30]
        assert len(set(top) & set(outliers)) >= 27, name
    assert dataclasses.asdict(cfg)["knn_reference_max"] == 3000         # saved with the score set
