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
  - N >= compressed_above (or kind "pq"): IVF-PQ, optionally OPQ-rotated, re-ranked exactly
    from a memory-mapped float16 copy of the vectors (ml/compressed.py).  An IVF-Flat index
    holds every float32 vector (5 GB at 1e7 x 128, 20 GB at 1e7 x 512); IVF-PQ holds pq_m
    bytes per row.  The float16 copy is written beside the index (`<index>.f16.npy`).

Loading: every index kind here (flat, IVF-Flat, IVF-PQ, OPQ+IVF-PQ, HNSW) reads with
faiss.IO_FLAG_MMAP in faiss 1.15 (checked by the tests), so web processes map one file
and share it through the page cache; the float16 rows are np.load(mmap_mode="r") too.

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
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import faiss
import numpy as np

from ml import compressed
from ml.atomic import atomic_path, save_npy_atomic, write_atomic
from ml.memmaps import release
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
    # Compressed index (IVF-PQ + float16 re-rank) for big sets.  At 1e6 x 128 an IVF-Flat is
    # 0.5 GB per copy and still fine; above it the flat codes outgrow a web process (1.5 GB
    # budget: 5 GB at 1e7 x 128), while IVF-PQ stays at pq_m bytes per row (0.3 GB at 1e7).
    compressed_above: int = 1_000_000  # N at or above this -> IVF-PQ (0 = never, unless kind "pq")
    pq_m: int = 0                 # PQ bytes per vector; 0 = auto: largest divisor of D <= min(64, D/4) (32 at D=128)
    pq_opq: bool = False          # OPQ rotation first: better codes, but training costs minutes on 2 cores
    pq_nlist: int = 0             # IVF cells; 0 = auto ~4 sqrt(N), capped at pq_nlist_max
    pq_nlist_max: int = 8192      # cap for auto nlist (training k-means cost grows with nlist x sample)
    pq_train_per_list: int = 64   # training sample = max(this * nlist, pq_train_min) rows, seeded
    pq_train_min: int = 100_000   # ... so small sets still train the PQ codebooks on enough rows
    pq_kmeans_iter: int = 10      # k-means iterations (coarse and PQ); re-ranking hides the small loss vs 25
    rerank_factor: int = 4        # PQ candidates per query = k * this, re-ranked exactly from float16
    pq_table_max_mb: int = 0      # IVF-PQ precomputed distance tables (nlist x pq_m x 256 floats) are private to
                                  # each process: 131 MB at 1e6 (268 MB at 1e7); 0 = none, measured p50 +0.2 ms


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


def is_compressed(n: int, cfg: IndexConfig) -> bool:
    """Whether a set of n rows gets the compressed (IVF-PQ + float16 re-rank) index."""
    if n < cfg.exact_below:
        return False
    return cfg.kind == "pq" or (cfg.compressed_above > 0 and n >= cfg.compressed_above)


def _empty_index(n: int, d: int, cfg: IndexConfig) -> faiss.Index:
    if n < cfg.exact_below:
        return faiss.IndexFlatL2(d)
    if is_compressed(n, cfg):
        nlist = compressed.pq_nlist(n, cfg.pq_nlist, cfg.pq_nlist_max)
        m = compressed.pq_m(d, cfg.pq_m)
        index = faiss.index_factory(d, compressed.factory_string(d, nlist, m, cfg.pq_opq))
        ivf = compressed.ivf_of(index)
        ivf.nprobe = cfg.ivf_nprobe
        ivf.cp.seed, ivf.cp.niter = cfg.seed, cfg.pq_kmeans_iter
        ivf.cp.max_points_per_centroid = max(cfg.pq_train_per_list, 39)
        ivf.pq.cp.seed, ivf.pq.cp.niter = cfg.seed, cfg.pq_kmeans_iter
        ivf.pq.cp.max_points_per_centroid = max(cfg.pq_train_per_list, 39)  # 16k rows per codebook
        ivf.do_polysemous_training = False  # index_factory turns it on; it costs minutes and we re-rank
        return index
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


def _train_compressed(index: faiss.Index, vectors: np.ndarray, cfg: IndexConfig) -> None:
    ivf = compressed.ivf_of(index)
    rows = compressed.train_rows(len(vectors), ivf.nlist, cfg.pq_train_per_list, cfg.pq_train_min, cfg.seed)
    sample = np.concatenate([prepare_vectors(vectors[rows[s:s + cfg.add_chunk]], cfg.metric)
                             for s in range(0, len(rows), cfg.add_chunk)])  # (T, D), memmap-friendly
    release(vectors)   # the sample touched pages all over the file: not kept in this job's RSS
    index.train(sample)


def build_index(vectors: np.ndarray, cfg: IndexConfig | None = None,
                progress: Progress | None = None) -> faiss.Index:
    """Build a faiss index over (N, D) embeddings; row i gets id i.

    Vectors may be a np.memmap: rows are normalised and added `cfg.add_chunk` at a time,
    so peak extra memory is one chunk, not a full copy. HNSW on 1e6 x 128 takes minutes.
    A compressed index built here has no float16 re-rank rows: use SearchIndex.build.
    """
    return _build(vectors, cfg or IndexConfig(), progress)[0]


def _build(vectors: np.ndarray, cfg: IndexConfig, progress: Progress | None,
           rerank_path: str | os.PathLike | None = None) -> tuple[faiss.Index, np.ndarray | None]:
    """(index, float16 prepared rows or None).  For a compressed index the float16 rows are
    written block by block as the vectors are added (to `rerank_path`, published atomically,
    and returned memory-mapped; in RAM without a path)."""
    n, d = vectors.shape
    index = _empty_index(n, d, cfg)
    pq = is_compressed(n, cfg)
    rows16 = None
    with faiss_threads(cfg.build_threads), \
            (compressed.float16_rows(n, d, rerank_path) if pq else nullcontext()) as rows16:
        if pq:
            if progress:
                progress(0, n, f"training {compressed.ivf_of(index).nlist} IVF-PQ cells on a sample")
            _train_compressed(index, vectors, cfg)
        elif hasattr(index, "nlist"):
            if progress:
                progress(0, n, "training IVF centroids")
            _train_ivf(index, vectors, cfg)
        for start in range(0, n, cfg.add_chunk):
            stop = min(n, start + cfg.add_chunk)
            block = prepare_vectors(vectors[start:stop], cfg.metric)
            release(vectors, start, stop)              # streamed: not left in this job's RSS
            if pq:
                rows16[start:stop] = compressed.check_float16(block)
                release(rows16, start, stop)
            index.add(block)
            if progress:
                progress(stop, n, "adding vectors")
    if pq and rerank_path is not None:
        rows16 = np.load(rerank_path, mmap_mode="r")
    return index, rows16


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
        release(vectors, start, start + chunk)  # a whole-file scan (index tuning): not left in the job's RSS
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


RERANK_SUFFIX = ".f16.npy"  # the float16 re-rank rows of a compressed index live at <index path> + this


class SearchIndex:
    """A faiss index plus the config that built it. Thread count is set on construction.

    A compressed (IVF-PQ) index also carries `rows16`, the prepared vectors as float16
    (N, D), usually a read-only memmap: queries fetch k * rerank_factor PQ candidates and
    re-rank them with exact distances from these rows."""

    def __init__(self, index: faiss.Index, cfg: IndexConfig, tuning: dict | None = None,
                 rows16: np.ndarray | None = None):
        self.index = index
        self.cfg = cfg
        self.tuning = tuning or {}  # what tune_query_param measured, kept in the .json sidecar
        self.rows16 = rows16
        set_faiss_threads(cfg.query_threads)

    @classmethod
    def build(cls, vectors: np.ndarray, cfg: IndexConfig | None = None,
              progress: Progress | None = None, rerank_path: str | os.PathLike | None = None
              ) -> "SearchIndex":
        """build_index, then (approximate indexes only) tune nprobe/efSearch to cfg.tune_recall.

        A compressed index writes its float16 re-rank rows to `rerank_path` while adding
        (pass the index path + RERANK_SUFFIX so `save` finds them there), else keeps them in RAM.
        """
        cfg = dataclasses.replace(cfg or IndexConfig())  # tuning edits cfg: never the caller's
        index, rows16 = _build(vectors, cfg, progress, rerank_path)
        self = cls(index, cfg, rows16=rows16)
        if cfg.tune_recall > 0 and not isinstance(self.index, faiss.IndexFlat):
            if progress:
                progress(len(vectors), len(vectors), "tuning query parameters")
            self.tuning = tune_query_param(self, vectors)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Index at `path`, config beside it at `path`.json, float16 re-rank rows (compressed
        index only) at `path` + RERANK_SUFFIX unless build already wrote them there; every
        file is written atomically, the .json last."""
        meta = {"config": asdict(self.cfg), "ntotal": self.ntotal, "dim": self.index.d,
                "tuning": self.tuning, "kind": type(self.index).__name__}
        if self.rows16 is not None:
            target = Path(str(path) + RERANK_SUFFIX)
            if not (isinstance(self.rows16, np.memmap) and self.rows16.filename
                    and Path(self.rows16.filename).resolve() == target.resolve()):
                save_npy_atomic(target, self.rows16)
            meta["rerank_file"] = target.name  # beside the index: a moved directory still loads
            meta["rerank_dtype"] = "float16"
        save_index(self.index, path)
        write_atomic(str(path) + ".json", json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> "SearchIndex":
        """mmap=True: faiss.IO_FLAG_MMAP, so processes share one page-cached copy (web)."""
        meta = json.loads(Path(str(path) + ".json").read_text())
        cfg = config_from_dict(meta["config"])
        old_table = faiss.cvar.precomputed_table_max_bytes  # read_index builds the IVF-PQ tables
        faiss.cvar.precomputed_table_max_bytes = cfg.pq_table_max_mb << 20
        try:
            index = load_index(path, mmap=mmap)
        finally:
            faiss.cvar.precomputed_table_max_bytes = old_table
        _apply_query_params(index, cfg)
        rows16 = None
        if meta.get("rerank_file"):
            rows16 = np.load(Path(path).parent / meta["rerank_file"], mmap_mode="r")  # never a private copy
            if rows16.shape != (index.ntotal, index.d):
                raise ValueError(f"re-rank rows {rows16.shape} do not match the index "
                                 f"({index.ntotal}, {index.d}); rebuild the index")
        return cls(index, cfg, meta.get("tuning"), rows16)

    @property
    def compressed(self) -> bool:
        return self.rows16 is not None

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
        if self.rows16 is not None:  # PQ candidates, re-ranked exactly from the float16 rows
            _, candidates = self.index.search(q, min(self.ntotal, k * max(1, self.cfg.rerank_factor)))
            raw, ids = compressed.rerank(q, candidates, self.rows16, k)
        else:
            raw, ids = self.index.search(q, k)
        dist = _to_distance(raw, self.cfg.metric).astype(np.float32)
        dist[ids < 0] = np.inf
        return dist, ids

    def vector(self, i: int) -> np.ndarray:
        """The stored (normalised, for cosine) vector of row i. (D,)"""
        if self.rows16 is not None:  # PQ reconstruction is lossy; the float16 row is not (much)
            return np.asarray(self.rows16[int(i)], dtype=np.float32)
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
    ivf = compressed.ivf_of(index)  # also inside an OPQ pre-transform
    if ivf is not None:
        ivf.nprobe = cfg.ivf_nprobe
