"""Probe the compressed search index at survey scale (issue 14, "search at 10^7").

Clustered synthetic vectors (D = 128 by default) written to a float32 .npy in a scratch
directory; builds the IVF-PQ + float16 re-rank index (ml.search, compressed path), saves it,
then a *fresh process* loads it with faiss.IO_FLAG_MMAP and answers the queries single
threaded.  Prints build time, sizes on disk, the query process's peak RSS, p50/p95 latency
at k = 50 and recall@50 against exact search.  Writes no results file.

    .venv/bin/python benchmarks/scale_index_probe.py --n 1000000 --dir /tmp/scaleprobe
    (delete --dir afterwards: it holds the vectors, N x D x 4 bytes)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_vectors(path: Path, n: int, d: int, clusters: int, seed: int, chunk: int = 200_000) -> None:
    """Gaussian clusters with a spread of widths (some tight galaxy types, some broad), streamed."""
    from numpy.lib.format import open_memmap
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    widths = rng.uniform(0.3, 1.0, clusters).astype(np.float32)
    out = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        b = min(chunk, n - s)
        c = rng.integers(0, clusters, b)
        out[s:s + b] = centres[c] + widths[c, None] * rng.normal(size=(b, d)).astype(np.float32)
    out.flush()


def build(args) -> None:
    from ml.search import RERANK_SUFFIX, IndexConfig, SearchIndex
    vec_path = Path(args.dir) / "vectors.npy"
    if not vec_path.exists():
        t = time.perf_counter()
        make_vectors(vec_path, args.n, args.d, args.clusters, args.seed)
        print(f"generated {args.n:,} x {args.d} in {time.perf_counter() - t:.1f} s", flush=True)
    x = np.load(vec_path, mmap_mode="r")
    cfg = IndexConfig(compressed_above=1, tune_recall=args.tune_recall, pq_opq=args.opq,
                      rerank_factor=args.rerank_factor, build_threads=args.threads)
    index_path = Path(args.dir) / "index.faiss"
    t = time.perf_counter()
    last = [0.0]

    def progress(done, total, message=""):
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            print(f"  {time.perf_counter() - t:7.1f} s  {done:,}/{total:,} {message}", flush=True)

    index = SearchIndex.build(x, cfg, progress, rerank_path=str(index_path) + RERANK_SUFFIX)
    built = time.perf_counter() - t
    index.save(index_path)
    print(json.dumps({"n": args.n, "d": args.d, "build_s": round(built, 1), "tuning": index.tuning,
                      "index_mb": round(index_path.stat().st_size / 2**20, 1),
                      "float16_mb": round(Path(str(index_path) + RERANK_SUFFIX).stat().st_size / 2**20, 1),
                      "factory": type(index.index).__name__, "cfg_nprobe": index.cfg.ivf_nprobe}), flush=True)


def query(args) -> None:
    """Run in a fresh process: mmap-load, 1,000 queries single threaded, exact truth, RSS."""
    import faiss
    from ml.search import SearchIndex, exact_knn, prepare_vectors, recall
    x = np.load(Path(args.dir) / "vectors.npy", mmap_mode="r")
    rows = np.sort(np.random.default_rng(args.seed + 1).choice(len(x), args.queries, replace=False))
    q = np.asarray(x[rows]) + np.float32(0.05) * np.random.default_rng(2).normal(size=(len(rows), x.shape[1])).astype(np.float32)
    rss0 = _mem()
    index = SearchIndex.load(Path(args.dir) / "index.faiss", mmap=True)
    faiss.omp_set_num_threads(1)
    times, found = [], []
    for v in q:
        t = time.perf_counter()
        found.append(index.query(v[None, :], 50)[1][0])
        times.append(time.perf_counter() - t)
    rss = _mem()
    faiss.omp_set_num_threads(args.threads or os.cpu_count())
    truth = exact_knn(x, prepare_vectors(q, "cosine"), 50, "cosine")
    ms = np.array(times) * 1000
    print(json.dumps({"queries": len(q), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                      "p95_ms": round(float(np.percentile(ms, 95)), 2),
                      "recall_at_50": round(recall(np.array(found), truth), 4),
                      "recall_at_10": round(recall(np.array(found)[:, :10], truth[:, :10]), 4),
                      "mem_mb_before_load": rss0, "mem_mb_after_queries": rss}), flush=True)


def _mem() -> dict:
    """VmHWM (peak RSS), VmRSS, and its anonymous (private) and file-backed (shared page cache) parts, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dir", default="/tmp/scale_index_probe")
    ap.add_argument("--opq", action="store_true")
    ap.add_argument("--rerank-factor", type=int, default=4)
    ap.add_argument("--tune-recall", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", choices=["all", "build", "query"], default="all")
    ap.add_argument("--quick", action="store_true", help="smoke run (make benchmarks): 20k rows, 200 queries")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.clusters = min(args.n, 20_000), min(args.queries, 200), 100
        args.dir = args.dir.rstrip("/") + "_quick"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.step in ("all", "build"):
        build(args)
    if args.step == "all":  # queries in a fresh process, so its RSS is what a web process pays
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--step", "query"], check=True)
    if args.step == "query":
        query(args)


if __name__ == "__main__":
    main()
