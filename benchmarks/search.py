"""Similarity search: p50/p95 single-query latency and recall@k against exact search.

    python benchmarks/search.py            # N = 1e4, 1e5, 1e6 (the 1e6 HNSW build takes minutes)
    python benchmarks/search.py --quick    # N = 1e4, 1e5
    python benchmarks/search.py --sweep    # also sweep efSearch / nprobe on each built index
    python benchmarks/search.py --embeddings emb.npy   # also real embeddings (N, D) float32

Synthetic data is a Gaussian mixture in a latent space mapped linearly to D=128 plus
isotropic noise, in two flavours:
  clustered: 32-d latent, N/1000 narrow clusters (like SSL embeddings of many galaxy types);
  hard:      64-d latent, N/20000 broad clusters (higher intrinsic dimension: ANN is harder).
Uniform noise would be unrealistically hard; a few tight blobs unrealistically easy.
Queries are stored rows ("galaxies like this one"), searched one at a time with
cfg.query_threads faiss threads, through SearchIndex.query (Python overhead included).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from common import machine_info, print_table, write_result  # noqa: F401  (sets sys.path)
from ml.search import IndexConfig, SearchIndex, recall, set_faiss_threads


def clustered_vectors(n: int, d: int = 128, n_clusters: int = 1000, latent_dim: int = 32,
                      seed: int = 0, chunk: int = 200_000) -> np.ndarray:
    """(n, d) float32 Gaussian-mixture embeddings with uneven cluster sizes and widths."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, latent_dim))          # (K, L)
    widths = rng.uniform(0.2, 0.6, n_clusters)                   # (K,)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))            # uneven populations
    mix = rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim)  # (L, D)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        lab = rng.choice(n_clusters, m, p=weights)
        z = centres[lab] + widths[lab, None] * rng.normal(size=(m, latent_dim))
        out[start:start + m] = z @ mix + 0.1 * rng.normal(size=(m, d))
    return out


DATASETS = {
    "clustered": dict(latent_dim=32, clusters_per=1000),
    "hard": dict(latent_dim=64, clusters_per=20000),
}


def latency_ms(index: SearchIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query wall time (ms) searching one query at a time; returns (times, ids (Q, k))."""
    for q in queries[:20]:  # warm-up: page in, lazy allocations, CPU caches
        index.query(q[None, :], k)
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, found = index.query(q[None, :], k)
        times.append((time.perf_counter() - t0) * 1000)
        ids.append(found[0])
    return np.array(times), np.stack(ids)


def sweep_values(index: SearchIndex) -> list[tuple[str, int]]:
    if hasattr(index.index, "hnsw"):
        return [("efSearch", v) for v in (32, 64, 128, 256, 512)]
    if hasattr(index.index, "nprobe"):
        return [("nprobe", v) for v in (8, 16, 32, 64, 128, 256, 512)]
    return []


def set_query_param(index: SearchIndex, name: str, value: int) -> None:
    if name == "efSearch":
        index.cfg.hnsw_ef_search = value
    else:
        index.cfg.ivf_nprobe = value
        index.index.nprobe = value


def run_one(data_name: str, x: np.ndarray, cfg: IndexConfig, n_queries: int, k: int,
            sweep: bool) -> list[dict]:
    n = len(x)
    rng = np.random.default_rng(1)
    queries = x[rng.choice(n, n_queries, replace=False)]
    exact_cfg = dataclasses.replace(cfg, exact_below=n + 1)
    exact = SearchIndex.build(x, exact_cfg)
    t_exact, truth = latency_ms(exact, queries, k)
    rows = [{"data": data_name, "N": n, "index": "flat (exact)", "build_s": 0.0,
             "p50_ms": float(np.percentile(t_exact, 50)), "p95_ms": float(np.percentile(t_exact, 95)),
             f"recall@{k}": 1.0}]
    del exact
    t0 = time.perf_counter()
    index = SearchIndex.build(x, cfg)
    build_s = time.perf_counter() - t0
    name = type(index.index).__name__
    tuned = index.tuning
    settings = [("default", None)] + (sweep_values(index) if sweep else [])
    for pname, value in settings:
        if value is not None:
            set_query_param(index, pname, value)
        t, found = latency_ms(index, queries, k)
        label = (f"{name} tuned {tuned.get('param', '')}={tuned.get('value', '')}"
                 if value is None else f"{name} {pname}={value}")
        rows.append({"data": data_name, "N": n, "index": label, "build_s": round(build_s, 1),
                     "p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
                     f"recall@{k}": recall(found, truth)})
    return rows, tuned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip N = 1e6")
    ap.add_argument("--sweep", action="store_true", help="sweep efSearch / nprobe")
    ap.add_argument("--kind", choices=["hnsw", "ivf"], default=None, help="override cfg.kind")
    ap.add_argument("--hnsw-m", type=int, default=None)
    ap.add_argument("--ef-construction", type=int, default=None)
    ap.add_argument("--sizes", type=str, default=None, help="comma list of N, e.g. 10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--data", type=str, default="clustered,hard", help="synthetic families")
    ap.add_argument("--embeddings", type=str, default=None, help=".npy (N, D) real embeddings")
    ap.add_argument("--out", type=str, default=None,
                    help="result name (default: search, or search_quick with --quick)")
    args = ap.parse_args()

    cfg = IndexConfig()
    if args.kind:
        cfg.kind = args.kind
    if args.hnsw_m:
        cfg.hnsw_m = args.hnsw_m
    if args.ef_construction:
        cfg.hnsw_ef_construction = args.ef_construction
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [10_000, 100_000] + ([] if args.quick else [1_000_000]))
    # Small N is searched exactly by design; force the approximate index so its recall
    # and latency are measured at every size too.
    bench_cfg = dataclasses.replace(cfg, exact_below=0)
    rows, tunings = [], []
    for family in args.data.split(","):
        spec = DATASETS[family]
        for n in sizes:
            x = clustered_vectors(n, args.dim, n_clusters=max(5, n // spec["clusters_per"]),
                                  latent_dim=spec["latent_dim"])
            new, tuned = run_one(family, x, bench_cfg, min(args.queries, n), args.k, args.sweep)
            rows += new
            tunings.append({"data": family, "N": n, **tuned})
            del x
    if args.embeddings:
        x = np.load(args.embeddings, mmap_mode="r")
        new, tuned = run_one(args.embeddings, np.asarray(x, dtype=np.float32), bench_cfg,
                             min(args.queries, len(x)), args.k, args.sweep)
        rows += new
        tunings.append({"N": len(x), "data": args.embeddings, **tuned})
    set_faiss_threads(cfg.query_threads)
    headers = ["data", "N", "index", "build_s", "p50_ms", "p95_ms", f"recall@{args.k}"]
    print(f"query threads: {cfg.query_threads}; build threads: {cfg.build_threads or 'all'}")
    print_table(rows, headers)
    name = args.out or ("search_quick" if args.quick else "search")  # quick runs keep the full result
    path = write_result(name, {"quick": args.quick, "config": dataclasses.asdict(cfg), "k": args.k,
                                   "queries": args.queries, "dim": args.dim,
                                   "query_threads": cfg.query_threads, "rows": rows,
                                   "tuning": tunings,
                                   "datasets": DATASETS})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
