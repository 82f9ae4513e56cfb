"""The compressed search index for large sets: IVF-PQ (optionally OPQ-rotated) plus exact
re-ranking from a memory-mapped float16 copy of the vectors.

Why (issue 14, "search at 10^7"): an IVF-Flat index holds every float32 vector, 5 GB at
10^7 x 128 and 20 GB at 10^7 x 512, and each web process used to load its own copy.
IVF-PQ stores `pq_m` bytes per vector (32 at D = 128: 320 MB at 10^7), and is loaded with
faiss.IO_FLAG_MMAP so every process shares one copy through the page cache.  PQ distances
are approximate, so a query asks for k' = k * rerank_factor candidates and re-ranks them
with exact distances computed from float16 rows (N x D x 2 bytes on disk, memory-mapped:
only the k' touched rows are read).  float16 keeps ~3 significant digits, far below the
gap between a 50th and a 51st neighbour on real embeddings.

Everything here works on *prepared* vectors (ml.search.prepare_vectors: unit length for
cosine), so squared L2 on them is what faiss returns for the exact indexes too.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator

import faiss
import numpy as np
from numpy.lib.format import open_memmap

from ml.atomic import atomic_path

RERANK_BLOCK_ROWS = 1 << 16  # candidate rows gathered per re-rank step (x D x 4 bytes: 32 MB at D=128)
FLOAT16_MAX = 65504.0


def pq_nlist(n: int, nlist: int, nlist_max: int) -> int:
    """IVF cells: `nlist` if set, else ~4 sqrt(N) capped at `nlist_max`; never more than N/39
    (faiss needs ~39 training points per cell)."""
    nlist = nlist or min(int(4 * math.sqrt(n)), nlist_max)
    return max(1, min(nlist, n // 39 or 1))


def pq_m(d: int, m: int) -> int:
    """PQ sub-quantisers (bytes per vector at 8 bits): `m` if set, else the largest divisor of
    D that is <= min(64, D/4), i.e. 4+ dimensions per byte (32 bytes at D = 128)."""
    if m:
        if d % m:
            raise ValueError(f"pq_m={m} must divide the vector dimension {d}")
        return m
    target = max(1, min(64, d // 4))
    return max(c for c in range(1, target + 1) if d % c == 0)


def factory_string(d: int, nlist: int, m: int, opq: bool) -> str:
    """faiss.index_factory description, e.g. 'OPQ32,IVF4000,PQ32' (squared L2 metric)."""
    return f"{f'OPQ{m},' if opq else ''}IVF{nlist},PQ{m}"


def ivf_of(index: faiss.Index):
    """The IVF part of an index (through an OPQ pre-transform), or None for flat/HNSW."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except (RuntimeError, TypeError):
        return None


def train_rows(n: int, nlist: int, per_list: int, minimum: int, seed: int) -> np.ndarray:
    """Sorted, seeded sample of max(per_list * nlist, minimum) row numbers (all rows if fewer)."""
    want = min(n, max(per_list * nlist, minimum))
    if want >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, want, replace=False))


@contextmanager
def float16_rows(n: int, d: int, path: str | os.PathLike | None = None) -> Iterator[np.ndarray]:
    """An (N, D) float16 array to fill block by block (see check_float16).

    With a path the array is an open_memmap at ml.atomic's temporary name, published
    (fsync + rename) when the block exits without error and removed otherwise, so readers
    never see half a file; reopen it with np.load(path, mmap_mode="r").  Without a path the
    rows stay in RAM (tests, batch jobs that do not save the index).
    """
    if path is None:
        yield np.empty((n, d), dtype=np.float16)
        return
    with atomic_path(path) as partial:
        rows = open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, d))
        yield rows
        rows.flush()
        del rows


def check_float16(rows: np.ndarray) -> np.ndarray:
    """rows unchanged, or ValueError when a component does not fit in float16."""
    if len(rows) and float(np.abs(rows).max()) > FLOAT16_MAX:
        raise ValueError("vector components beyond float16 range (|x| > 65504); use the cosine "
                         "metric or rescale the embedding before building a compressed index")
    return rows


def rerank(queries: np.ndarray, candidates: np.ndarray, rows16: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared-L2 top-k among candidate rows.

    queries (Q, D) float32 prepared; candidates (Q, K') int64 row ids (-1 = none);
    rows16 (N, D) float16, may be a read-only memmap.  -> squared distances (Q, k) float32
    (+inf where fewer than k candidates), ids (Q, k) int64 (-1 there), nearest first.
    """
    q_n, k_c = candidates.shape
    out_d = np.full((q_n, k), np.inf, dtype=np.float32)
    out_i = np.full((q_n, k), -1, dtype=np.int64)
    step = max(1, RERANK_BLOCK_ROWS // max(k_c, 1))
    for s in range(0, q_n, step):
        cand = candidates[s:s + step]                              # (B, K')
        valid = cand >= 0
        uniq, inverse = np.unique(np.where(valid, cand, 0), return_inverse=True)
        vecs = np.asarray(rows16[uniq], dtype=np.float32)          # sorted rows: sequential reads
        diff = vecs[inverse.reshape(cand.shape)] - queries[s:s + step, None, :]  # (B, K', D)
        dist = np.einsum("bkd,bkd->bk", diff, diff)                 # (B, K')
        dist[~valid] = np.inf
        take = min(k, k_c)
        order = np.argsort(dist, axis=1, kind="stable")[:, :take]
        out_d[s:s + step, :take] = np.take_along_axis(dist, order, axis=1)
        ids = np.take_along_axis(cand, order, axis=1)
        out_i[s:s + step, :take] = np.where(np.isfinite(out_d[s:s + step, :take]), ids, -1)
    return out_d, out_i
