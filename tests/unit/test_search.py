"""ml/search.py: exact and approximate faiss indexes over galaxy embeddings."""
from __future__ import annotations

import dataclasses
import json

import faiss
import numpy as np
import pytest

from ml.search import (IndexConfig, SearchIndex, build_index, exact_knn, faiss_threads, load_index,
                       prepare_vectors, recall, save_index)

pytestmark = pytest.mark.unit


def blobs(n: int = 3000, d: int = 32, k: int = 20, seed: int = 0) -> np.ndarray:
    """(n, d) float32 clustered vectors, like embeddings of a few galaxy types."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return blobs()


def approx_cfg(kind: str) -> IndexConfig:
    # exact_below=0 forces the approximate index even on tiny N
    return IndexConfig(kind=kind, exact_below=0, ivf_nlist=32, tune_recall=0.0,
                       ivf_nprobe=8, hnsw_ef_search=64)


def test_exact_index_returns_self_as_nearest(data):
    index = SearchIndex.build(data, IndexConfig())
    assert isinstance(index.index, faiss.IndexFlatL2)
    dist, ids = index.query(data[:50], k=5)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50))
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-5)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # sorted, lower = closer


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_against_exact(data, kind):
    index = SearchIndex.build(data, approx_cfg(kind))
    expected_type = faiss.IndexHNSWFlat if kind == "hnsw" else faiss.IndexIVFFlat
    assert isinstance(index.index, expected_type)
    queries = prepare_vectors(data[::30], "cosine")
    truth = exact_knn(data, queries, 20, "cosine")
    _, found = index.query(data[::30], 20)
    assert recall(found, truth) >= 0.9


def test_exact_knn_matches_bruteforce_across_chunks(data):
    q = prepare_vectors(data[:7], "l2")
    truth = exact_knn(data, q, 10, "l2", chunk=500)  # several chunks must merge correctly
    d2 = ((data[:7, None, :] - data[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(truth, np.argsort(d2, axis=1, kind="stable")[:, :10])


def test_tuning_raises_nprobe_until_target_recall(data):
    cfg = dataclasses.replace(approx_cfg("ivf"), ivf_nprobe=1, tune_recall=0.99,
                              tune_queries=50, tune_k=20)
    index = SearchIndex.build(data, cfg)
    assert index.tuning["recall"] >= 0.99
    assert index.cfg.ivf_nprobe == index.tuning["value"] == index.index.nprobe
    assert index.cfg.ivf_nprobe > 1
    assert cfg.ivf_nprobe == 1  # the caller's config is not mutated
    # minimal: half the chosen nprobe misses the target on the same queries
    rows = np.sort(np.random.default_rng(cfg.seed).choice(len(data), 50, replace=False))
    truth = exact_knn(data, prepare_vectors(data[rows], "cosine"), 20, "cosine")
    index.index.nprobe = index.cfg.ivf_nprobe // 2
    assert recall(index.index.search(prepare_vectors(data[rows], "cosine"), 20)[1], truth) < 0.99


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_save_load_round_trip_gives_same_results(tmp_path, data, kind):
    cfg = IndexConfig() if kind == "exact" else approx_cfg(kind)
    index = SearchIndex.build(data, cfg)
    path = tmp_path / "emb.faiss"
    index.save(path)
    assert not list(tmp_path.glob("*.partial"))
    loaded = SearchIndex.load(path)
    assert loaded.cfg == index.cfg
    assert json.loads((tmp_path / "emb.faiss.json").read_text())["ntotal"] == len(data)
    for a, b in zip(index.query(data[:20], 10), loaded.query(data[:20], 10)):
        np.testing.assert_array_equal(a, b)
    # query_by_id needs reconstruct(), which IVF only supports with its direct map
    np.testing.assert_array_equal(index.query_by_id(3, 10)[1], loaded.query_by_id(3, 10)[1])


def test_save_index_is_atomic_replace(tmp_path, data):
    path = tmp_path / "idx" / "x.faiss"
    path.parent.mkdir()
    save_index(build_index(data[:100]), path)
    save_index(build_index(data[:200]), path)
    assert load_index(path).ntotal == 200
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.faiss"]


def test_cosine_metric_is_invariant_to_vector_scale(data):
    index = SearchIndex.build(data, IndexConfig(metric="cosine"))
    scaled = data[:10] * np.arange(1, 11, dtype=np.float32)[:, None] * 7.5
    d1, i1 = index.query(data[:10], 8)
    d2, i2 = index.query(scaled, 8)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-5)
    # rows stored at another scale are found too: cosine distance 0 to themselves
    big = SearchIndex.build(data * 1000.0, IndexConfig(metric="cosine"))
    np.testing.assert_array_equal(big.query(data[:10], 1)[1][:, 0], np.arange(10))


def test_l2_metric_depends_on_scale_and_returns_euclidean_distance(data):
    index = SearchIndex.build(data, IndexConfig(metric="l2"))
    dist, ids = index.query(data[:1] + 0.5, 1)
    assert ids[0, 0] == 0
    np.testing.assert_allclose(dist[0, 0], 0.5 * np.sqrt(data.shape[1]), rtol=1e-4)


def test_cosine_distance_values(data):
    index = SearchIndex.build(data[:2], IndexConfig())
    a, b = prepare_vectors(data[:2], "cosine")
    dist, ids = index.query(data[:1], 2)
    np.testing.assert_allclose(dist[0, 1], 1.0 - float(a @ b), atol=1e-5)


def test_query_by_id_excludes_self(data):
    index = SearchIndex.build(data, IndexConfig())
    dist, ids = index.query_by_id(42, 5)
    assert len(ids) == 5 and 42 not in ids
    _, with_self = index.query_by_id(42, 5, exclude_self=False)
    assert with_self[0] == 42


def test_query_by_id_excludes_self_even_with_exact_duplicates(data):
    dup = np.concatenate([data[:100], data[:1]])  # row 100 duplicates row 0
    index = SearchIndex.build(dup, IndexConfig())
    _, ids = index.query_by_id(0, 3)
    assert 0 not in ids and ids[0] == 100


@pytest.mark.parametrize("mode", ["mean", "rrf"])
def test_more_like_these_excludes_positives_and_finds_their_cluster(mode):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 16)) * 5
    x = np.concatenate([a + rng.normal(size=(200, 16)), b + rng.normal(size=(200, 16))])
    index = SearchIndex.build(x.astype(np.float32), IndexConfig())
    positives = [0, 1, 2, 3, 4]
    _, ids = index.query_many_positives(positives, 30, mode=mode)
    assert len(ids) == 30
    assert not set(positives) & set(ids.tolist())
    assert np.all(ids < 200)  # all from the positives' blob, none from the other


def test_more_like_these_rejects_empty_and_unknown_mode(data):
    index = SearchIndex.build(data[:100], IndexConfig())
    with pytest.raises(ValueError):
        index.query_many_positives([], 5)
    with pytest.raises(ValueError):
        index.query_many_positives([1], 5, mode="vote")


def test_query_threads_are_applied_and_batch_threads_restored(data):
    SearchIndex(faiss.IndexFlatL2(4), IndexConfig(query_threads=1))
    assert faiss.omp_get_max_threads() == 1
    with faiss_threads(2):
        assert faiss.omp_get_max_threads() == 2
    assert faiss.omp_get_max_threads() == 1
    build_index(data[:100], IndexConfig(build_threads=2))  # building does not leak its threads
    assert faiss.omp_get_max_threads() == 1


def test_build_reports_progress(data):
    calls = []
    build_index(data, IndexConfig(add_chunk=1000), progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [1000, 2000, 3000]
    assert all(c[1] == 3000 for c in calls)
