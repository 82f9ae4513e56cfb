"""Similarity search over galaxy embeddings with faiss ("find galaxies like this one").

Ids are ROW POSITIONS in the embedding array (0..N-1); the caller maps rows to Galaxy
ids. Distances returned by `SearchIndex.query` are "lower = closer":
  - metric "cosine": cosine distance 1 - cos(a, b), in [0, 2];
  - metric "l2": Euclidean distance (not squared), in embedding units.

Cosine is implemented as L2-normalise + squared-L2 search. For unit vectors
||a - b||^2 = 2 - 2 cos(a, b), so the ranking is identical to inner-product search, and
HNSW/IVF stay on their best-tested metric (IVF k-means centroids are not unit length,
which biases inner-product cell assignment).

Index choice (measured by benchmarks/search.py, 2 shared CPU cores, 1e6 x 128):
  - N < exact_below: IndexFlatL2 (exact; ~1 ms/query at 5e4, ~20 ms at 1e6).
  - kind "ivf" (default): IndexIVFFlat, nlist ~ 4 sqrt(N). Builds in ~30 s at 1e6 and
    reaches recall@50 >= 0.95 at ~1 ms p95 even on hard (64-d intrinsic) data, because
    recall -> 1 as nprobe grows. SearchIndex.build tunes nprobe on the data itself.
  - kind "hnsw": IndexHNSWFlat (M=16, efConstruction=64) takes ~2 min to build at 1e6
    and its recall@50 saturated at ~0.82 on the hard data even with efSearch=512.

Threads: faiss uses one process-wide OpenMP pool. A web process with several worker
threads/processes each running multi-threaded faiss oversubscribes the CPU and makes
p95 latency much worse, so `SearchIndex` sets `cfg.query_threads` (default 1) on
construction; `build_index` uses `cfg.build_threads` (0 = all cores) while it builds and
restores the previous value afterwards.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import faiss
import numpy as np

from ml.atomic import atomic_path, write_atomic
from ml.progress import Progress


@dataclass
class IndexConfig:
    metric: str = "cosine"        # "cosine" (SSL embeddings are compared by angle) or "l2"
    exact_below: int = 50_000     # N under this -> exact flat index (~1 ms/query at 5e4, recall 1)
    kind: str = "ivf"             # approximate index for larger N: "ivf" (measured better, see module doc) or "hnsw"
    ivf_nlist: int = 0            # IVF cells; 0 = auto ~ 4*sqrt(N) (4000 at 1e6)
    ivf_nprobe: int = 64          # IVF cells visited per query (overwritten by tuning when tune_recall > 0)
    ivf_train_per_list: int = 50  # k-means training points per cell (faiss warns under 39)
    hnsw_m: int = 16              # HNSW links per node; 16 builds ~2x faster than 32
    hnsw_ef_construction: int = 64  # HNSW build-time beam
    hnsw_ef_search: int = 128     # HNSW query-time beam; raised to k when smaller
    tune_recall: float = 0.98     # SearchIndex.build picks the smallest nprobe/efSearch reaching this recall@tune_k (0 = off); margin over the 0.95 goal for sampling noise
    tune_k: int = 50              # k used when tuning (the "more like this" page size)
    tune_queries: int = 200       # stored rows used as tuning queries (exact search on them costs a few s at 1e6)
    tune_max_param: int = 256     # ceiling for nprobe/efSearch (nprobe 256 at 1e6 x 128: ~2.4 ms p95; 512: ~5 ms)
    add_chunk: int = 100_000      # rows added per step (bounds the temporary normalised copy; progress granularity)
    build_threads: int = 0        # OpenMP threads while building; 0 = all cores
    query_threads: int = 1        # OpenMP threads for queries (1 = no oversubscription in web processes)
    seed: int = 0                 # k-means and tuning-query sampling seed


def config_from_dict(d: dict) -> IndexConfig:
    """Rebuild a config saved with asdict(); unknown keys (from newer versions) are ignored."""
    known = {f.name for f in fields(IndexConfig)}
    return IndexConfig(**{k: v for k, v in d.items() if k in known})


def set_faiss_threads(n: int) -> int:
    """Set faiss's process-wide OpenMP thread count (0 = all cores). Returns the old value."""
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n if n > 0 else (os.cpu_count() or 1))
    return old


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Temporarily use n faiss threads (0 = all cores), e.g. for a batch job inside a
    process whose steady state is 1; the previous count is restored on exit."""
    old = set_faiss_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def prepare_vectors(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, and unit length for cosine. (N, D) -> (N, D)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)  # zero vectors stay zero instead of NaN
    elif metric != "l2":
        raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'l2'")
    return np.ascontiguousarray(x, dtype=np.float32)


def _nlist_for(n: int, cfg: IndexConfig) -> int:
    nlist = cfg.ivf_nlist or int(4 * math.sqrt(n))
    return max(1, min(nlist, n // 39 or 1))  # never more cells than the data can train


def _empty_index(n: int, d: int, cfg: IndexConfig) -> faiss.Index:
    if n < cfg.exact_below:
        return faiss.IndexFlatL2(d)
    if cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
        return index
    if cfg.kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, _nlist_for(n, cfg))
        index.nprobe = cfg.ivf_nprobe
        return index
    raise ValueError(f"unknown index kind {cfg.kind!r}; use 'hnsw' or 'ivf'")


def _train_ivf(index: faiss.Index, vectors: np.ndarray, cfg: IndexConfig) -> None:
    n = len(vectors)
    n_train = min(n, index.nlist * cfg.ivf_train_per_list)
    rows = np.sort(np.random.default_rng(cfg.seed).choice(n, n_train, replace=False))
    index.cp.seed = cfg.seed
    index.cp.max_points_per_centroid = cfg.ivf_train_per_list  # we already subsampled
    index.train(prepare_vectors(vectors[rows], cfg.metric))
    index.make_direct_map()  # enables reconstruct(i) for query_by_id


def build_index(vectors: np.ndarray, cfg: IndexConfig | None = None,
                progress: Progress | None = None) -> faiss.Index:
    """Build a faiss index over (N, D) embeddings; row i gets id i.

    Vectors may be a np.memmap: rows are normalised and added `cfg.add_chunk` at a time,
    so peak extra memory is one chunk, not a full copy. HNSW on 1e6 x 128 takes minutes.
    """
    cfg = cfg or IndexConfig()
    n, d = vectors.shape
    index = _empty_index(n, d, cfg)
    with faiss_threads(cfg.build_threads):
        if hasattr(index, "nlist"):
            if progress:
                progress(0, n, "training IVF centroids")
            _train_ivf(index, vectors, cfg)
        for start in range(0, n, cfg.add_chunk):
            stop = min(n, start + cfg.add_chunk)
            index.add(prepare_vectors(vectors[start:stop], cfg.metric))
            if progress:
                progress(stop, n, "adding vectors")
    return index


def save_index(index: faiss.Index, path: str | os.PathLike) -> None:
    """Write atomically: readers see the old file or the complete new one, never half."""
    with atomic_path(path) as partial:
        faiss.write_index(index, str(partial))


def load_index(path: str | os.PathLike, mmap: bool = False) -> faiss.Index:
    """Read an index; mmap=True maps flat/IVF data from disk instead of loading it all."""
    flags = faiss.IO_FLAG_MMAP if mmap else 0
    return faiss.read_index(str(path), flags)


def _to_distance(raw: np.ndarray, metric: str) -> np.ndarray:
    """faiss squared L2 -> cosine distance (unit vectors) or Euclidean distance."""
    raw = np.maximum(raw, 0.0)  # float error can give tiny negatives
    return (raw / 2.0) if metric == "cosine" else np.sqrt(raw)


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str,
              chunk: int = 200_000) -> np.ndarray:
    """Exact top-k ids of prepared queries (Q, D) over (N, D) vectors, chunk by chunk. -> (Q, k)."""
    best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        flat = faiss.IndexFlatL2(queries.shape[1])
        flat.add(prepare_vectors(vectors[start:start + chunk], metric))
        d, i = flat.search(queries, min(k, flat.ntotal))
        best_d = np.concatenate([best_d, d], axis=1)
        best_i = np.concatenate([best_i, i + start], axis=1)
        order = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(best_d, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each exact top-k list that was found. (Q, k) x (Q, k) -> [0, 1]."""
    return float(np.mean([np.isin(t, f).mean() for f, t in zip(found, truth)]))


def tune_query_param(index: "SearchIndex", vectors: np.ndarray) -> dict:
    """Smallest nprobe/efSearch (powers of two) whose recall@tune_k on stored rows reaches
    cfg.tune_recall, capped at cfg.tune_max_param. Sets it on index/cfg; returns a report."""
    cfg = index.cfg
    name = "hnsw_ef_search" if isinstance(index.index, faiss.IndexHNSWFlat) else "ivf_nprobe"
    n = len(vectors)
    rows = np.sort(np.random.default_rng(cfg.seed).choice(n, min(cfg.tune_queries, n), replace=False))
    q = prepare_vectors(vectors[rows], cfg.metric)
    k = min(cfg.tune_k, n)
    truth = exact_knn(vectors, q, k, cfg.metric)
    value, got = 1, 0.0
    while True:
        setattr(cfg, name, value)
        _apply_query_params(index.index, cfg)
        got = recall(index.query(q, k)[1], truth)
        if got >= cfg.tune_recall or value >= cfg.tune_max_param:
            break
        value = min(value * 2, cfg.tune_max_param)
    return {"param": name, "value": value, "recall": got, "target": cfg.tune_recall, "k": k,
            "queries": len(rows)}


class SearchIndex:
    """A faiss index plus the config that built it. Thread count is set on construction."""

    def __init__(self, index: faiss.Index, cfg: IndexConfig, tuning: dict | None = None):
        self.index = index
        self.cfg = cfg
        self.tuning = tuning or {}  # what tune_query_param measured, kept in the .json sidecar
        set_faiss_threads(cfg.query_threads)

    @classmethod
    def build(cls, vectors: np.ndarray, cfg: IndexConfig | None = None,
              progress: Progress | None = None) -> "SearchIndex":
        """build_index, then (approximate indexes only) tune nprobe/efSearch to cfg.tune_recall."""
        cfg = dataclasses.replace(cfg or IndexConfig())  # tuning edits cfg: never the caller's
        self = cls(build_index(vectors, cfg, progress), cfg)
        if cfg.tune_recall > 0 and not isinstance(self.index, faiss.IndexFlat):
            if progress:
                progress(len(vectors), len(vectors), "tuning query parameters")
            self.tuning = tune_query_param(self, vectors)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Index at `path`, config beside it at `path`.json (both written atomically)."""
        save_index(self.index, path)
        write_atomic(str(path) + ".json", json.dumps({"config": asdict(self.cfg), "ntotal": self.ntotal,
                                                     "dim": self.index.d, "tuning": self.tuning}, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> "SearchIndex":
        meta = json.loads(Path(str(path) + ".json").read_text())
        cfg = config_from_dict(meta["config"])
        index = load_index(path, mmap=mmap)
        _apply_query_params(index, cfg)
        return cls(index, cfg, meta.get("tuning"))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest rows for each query. (Q, D) -> distances (Q, k) float32, ids (Q, k) int64.

        Missing results (k > N, or an IVF probe that found too few) have id -1 and
        distance +inf.
        """
        q = prepare_vectors(vectors, self.cfg.metric)
        k = max(1, min(int(k), self.ntotal))
        if isinstance(self.index, faiss.IndexHNSWFlat):
            # efSearch below k silently truncates the result list
            self.index.hnsw.efSearch = max(self.cfg.hnsw_ef_search, k)
        raw, ids = self.index.search(q, k)
        dist = _to_distance(raw, self.cfg.metric).astype(np.float32)
        dist[ids < 0] = np.inf
        return dist, ids

    def vector(self, i: int) -> np.ndarray:
        """The stored (normalised, for cosine) vector of row i. (D,)"""
        return self.index.reconstruct(int(i))

    def query_by_id(self, i: int, k: int, exclude_self: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of stored row i. Returns distances (k,), ids (k,)."""
        dist, ids = self.query(self.vector(i)[None, :], k + 1 if exclude_self else k)
        dist, ids = dist[0], ids[0]
        if exclude_self:
            # Exact duplicates may tie with row i, so drop i by id rather than position 0.
            keep = ids != i
            dist, ids = dist[keep][:k], ids[keep][:k]
        return dist, ids

    def query_many_positives(self, ids: Sequence[int], k: int, mode: str = "mean"
                             ) -> tuple[np.ndarray, np.ndarray]:
        """"More like these": k rows similar to a set of positive rows, positives excluded.

        mode "mean": one query with the mean of the (normalised) positives; returns its
          distances (k,), ids (k,). Good when the positives are one kind of object.
        mode "rrf": reciprocal-rank fusion, score(j) = sum_p 1 / (60 + rank_p(j)) over a
          per-positive neighbour list; returns (-score (k,), ids (k,)) so "lower = better"
          still holds. Good when positives are diverse (a mean would fall between them).
        """
        pos = np.unique(np.asarray(ids, dtype=np.int64))
        if len(pos) == 0:
            raise ValueError("need at least one positive id")
        vecs = np.stack([self.vector(i) for i in pos])  # (P, D), unit length for cosine
        fetch = k + len(pos)  # enough to still have k after dropping the positives
        if mode == "mean":
            dist, found = self.query(vecs.mean(axis=0, keepdims=True), fetch)
            keep = ~np.isin(found[0], pos) & (found[0] >= 0)
            return dist[0][keep][:k], found[0][keep][:k]
        if mode == "rrf":
            _, found = self.query(vecs, fetch)  # (P, fetch)
            scores: dict[int, float] = {}
            for row in found:
                for rank, j in enumerate(row):
                    if j >= 0 and j not in pos:
                        scores[int(j)] = scores.get(int(j), 0.0) + 1.0 / (60 + rank)
            best = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
            return (np.array([-s for _, s in best], dtype=np.float32),
                    np.array([j for j, _ in best], dtype=np.int64))
        raise ValueError(f"unknown mode {mode!r}; use 'mean' or 'rrf'")


def _apply_query_params(index: faiss.Index, cfg: IndexConfig) -> None:
    """Query-time knobs are not all stored in the index file; re-apply them from cfg."""
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = cfg.hnsw_ef_search
    if hasattr(index, "nprobe"):
        index.nprobe = cfg.ivf_nprobe
