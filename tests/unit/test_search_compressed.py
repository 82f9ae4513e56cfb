"""ml/search.py compressed path: IVF-PQ + exact re-rank from float16 rows, mmap loading."""
from __future__ import annotations

import dataclasses
import json

import faiss
import numpy as np
import pytest

from ml import compressed
from ml.search import (RERANK_SUFFIX, IndexConfig, SearchIndex, exact_knn, is_compressed, prepare_vectors,
                       recall)

pytestmark = pytest.mark.unit


def clustered(n: int = 10_000, d: int = 32, k: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)


def pq_cfg(**kw) -> IndexConfig:
    # kind "pq" forces the compressed index at any N; 8 bytes per 32-d row, few k-means
    # iterations and a small training sample keep the build quick on a shared 2-core box
    return IndexConfig(**{"kind": "pq", "exact_below": 0, "tune_recall": 0.0, "ivf_nprobe": 16,
                          "pq_m": 8, "pq_nlist": 64, "pq_kmeans_iter": 5, "pq_train_min": 5000, **kw})


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered()


@pytest.fixture(scope="module")
def built(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "index.faiss"
    index = SearchIndex.build(data, pq_cfg(), rerank_path=str(path) + RERANK_SUFFIX)
    index.save(path)
    queries = data[::20]                                          # 500 stored rows
    truth = exact_knn(data, prepare_vectors(queries, "cosine"), 50, "cosine")
    return index, path, queries, truth


def test_compressed_recall_at_10_and_50_against_exact(built):
    index, _, queries, truth = built
    assert isinstance(index.index, faiss.IndexIVFPQ) and index.compressed
    dist, found = index.query(queries, 50)
    assert recall(found, truth) >= 0.95
    assert recall(found[:, :10], truth[:, :10]) >= 0.95
    assert np.all(np.diff(dist, axis=1) >= 0)                       # nearest first, exact distances


def test_reranking_is_what_makes_recall(built):
    """8-byte PQ codes alone rank poorly; a broken re-rank would fall back to this level."""
    index, _, queries, truth = built
    _, pq_only = index.index.search(prepare_vectors(queries, "cosine"), 50)
    _, reranked = index.query(queries, 50)
    assert recall(pq_only, truth) < 0.9 < recall(reranked, truth)
    assert recall(reranked, truth) - recall(pq_only, truth) > 0.1


def test_reranked_distances_are_exact_cosine_distances(built, data):
    index, _, _, _ = built
    dist, ids = index.query(data[:3], 5)
    x = prepare_vectors(data, "cosine")
    want = 1.0 - np.einsum("qd,qkd->qk", x[:3], x[ids])
    np.testing.assert_allclose(dist, want, atol=2e-3)             # float16 rows: ~1e-3
    np.testing.assert_array_equal(ids[:, 0], np.arange(3))        # a stored row finds itself


def test_float16_rows_are_written_beside_the_index_and_mmap_loading_gives_same_results(built):
    index, path, queries, _ = built
    rows16 = np.load(str(path) + RERANK_SUFFIX, mmap_mode="r")
    assert rows16.dtype == np.float16 and rows16.shape == (10_000, 32)
    meta = json.loads((path.parent / "index.faiss.json").read_text())
    assert meta["rerank_file"] == "index.faiss.f16.npy" and meta["config"]["kind"] == "pq"
    assert not list(path.parent.glob("*.partial"))
    for mmap in (False, True):
        loaded = SearchIndex.load(path, mmap=mmap)
        assert isinstance(loaded.rows16, np.memmap)                  # never a private copy of the rows
        assert loaded.cfg == index.cfg
        for a, b in zip(index.query(queries[:50], 20), loaded.query(queries[:50], 20)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(index.query_by_id(7, 10)[1], loaded.query_by_id(7, 10)[1])


@pytest.mark.slow  # OPQ's rotation training takes minutes on a loaded 2-core box
def test_opq_variant_builds_saves_and_mmap_loads(tmp_path, data):
    small = data[:5000]
    index = SearchIndex.build(small, pq_cfg(pq_opq=True, pq_nlist=32, rerank_factor=10))
    assert isinstance(index.index, faiss.IndexPreTransform)
    index.save(tmp_path / "opq.faiss")                             # rows16 in RAM: save writes them
    loaded = SearchIndex.load(tmp_path / "opq.faiss", mmap=True)
    assert compressed.ivf_of(loaded.index).nprobe == 16            # nprobe reaches the IVF inside OPQ
    truth = exact_knn(small, prepare_vectors(small[:100], "cosine"), 10, "cosine")
    assert recall(loaded.query(small[:100], 10)[1], truth) >= 0.9


def test_threshold_switches_index_kind(data):
    cfg = IndexConfig(exact_below=1000, compressed_above=4000, tune_recall=0.0, ivf_nlist=16, pq_m=8)
    assert not is_compressed(999, cfg) and not is_compressed(3999, cfg) and is_compressed(4000, cfg)
    assert isinstance(SearchIndex.build(data[:500], cfg).index, faiss.IndexFlatL2)
    assert isinstance(SearchIndex.build(data[:2000], cfg).index, faiss.IndexIVFFlat)
    big = SearchIndex.build(data[:5000], dataclasses.replace(cfg, pq_nlist=16, pq_kmeans_iter=5))
    assert isinstance(big.index, faiss.IndexIVFPQ) and big.compressed
    assert not is_compressed(10**9, IndexConfig(compressed_above=0))  # 0 turns it off


def test_tuning_covers_the_reranked_search(data):
    cfg = pq_cfg(ivf_nprobe=1, tune_recall=0.97, tune_queries=100, tune_k=20)
    index = SearchIndex.build(data, cfg)
    assert index.tuning["recall"] >= 0.97 and index.cfg.ivf_nprobe > 1
    assert compressed.ivf_of(index.index).nprobe == index.cfg.ivf_nprobe


def test_l2_vectors_beyond_float16_are_refused(tmp_path, data):
    with pytest.raises(ValueError, match="float16"):
        SearchIndex.build(data[:3000] * 1e5, pq_cfg(metric="l2", pq_nlist=16),
                          rerank_path=tmp_path / "x.f16.npy")
    assert not list(tmp_path.glob("x.f16*"))                      # no half-written file left


def test_rerank_handles_missing_candidates():
    rows = np.eye(4, dtype=np.float16)
    d, i = compressed.rerank(np.eye(4, dtype=np.float32)[:1], np.array([[2, -1, 0, -1]]), rows, 3)
    assert i.tolist() == [[0, 2, -1]] and d[0, 0] == 0 and np.isinf(d[0, 2])


def test_auto_sizes():
    assert compressed.pq_m(128, 0) == 32 and compressed.pq_m(512, 0) == 64 and compressed.pq_m(10, 0) == 2
    with pytest.raises(ValueError):
        compressed.pq_m(100, 32)
    assert compressed.pq_nlist(10**6, 0, 8192) == 4000 and compressed.pq_nlist(10**7, 0, 8192) == 8192
    rows = compressed.train_rows(10**6, 4000, 64, 100_000, seed=0)
    assert len(rows) == 256_000 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, compressed.train_rows(10**6, 4000, 64, 100_000, seed=0))


def test_loaded_index_skips_per_process_distance_tables_unless_asked(built):
    index, path, queries, _ = built
    plain = SearchIndex.load(path, mmap=True)
    assert compressed.ivf_of(plain.index).precomputed_table.size() == 0
    np.testing.assert_array_equal(plain.query(queries[:20], 10)[1], index.query(queries[:20], 10)[1])
    saved = (path.parent / "index.faiss.json").read_text()
    meta = json.loads(saved)
    meta["config"]["pq_table_max_mb"] = 64
    (path.parent / "index.faiss.json").write_text(json.dumps(meta))
    try:
        assert compressed.ivf_of(SearchIndex.load(path, mmap=True).index).precomputed_table.size() > 0
    finally:
        (path.parent / "index.faiss.json").write_text(saved)  # the module's other tests share the files
