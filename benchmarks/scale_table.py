"""Synthetic embedding tables for the survey-scale benchmark (benchmarks/scale.py).

    python benchmarks/scale_table.py OUT.parquet --n 1000000 [--d 128] [--seed 0]

Writes a Parquet file in the layout `manage.py import_embeddings` reads (issue 14): `id`
(string), `ra`, `dec` (float64 degrees, uniform on the sphere), `embedding` (fixed-size list of
float32, D values), plus catalogue columns `mag_r` and `redshift`.  Vectors are the clustered
Gaussian mixture of benchmarks/search.py (N/1000 uneven clusters in a 32-d latent space mapped to
D, plus noise), generated and written one row group at a time, so 10^7 rows need ~100 MB of RAM.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 100_000


def clustered_chunks(n: int, d: int = 128, n_clusters: int = 1000, latent_dim: int = 32,
                     seed: int = 0, chunk: int = ROW_GROUP) -> Iterator[np.ndarray]:
    """The clustered mixture of benchmarks/search.py, yielded in (<= chunk, d) float32 blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, latent_dim))
    widths = rng.uniform(0.2, 0.6, n_clusters)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    mix = rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        lab = rng.choice(n_clusters, m, p=weights)
        z = centres[lab] + widths[lab, None] * rng.normal(size=(m, latent_dim))
        yield (z @ mix + 0.1 * rng.normal(size=(m, d))).astype(np.float32)


def schema(d: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()),
                      ("embedding", pa.list_(pa.float32(), d)),
                      ("mag_r", pa.float32()), ("redshift", pa.float32())])


def write_table(path: Path, n: int, d: int = 128, seed: int = 0, progress=None) -> dict:
    """Write the table; returns {"rows", "seconds", "bytes"}."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    n_clusters = max(10, n // 1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    written = 0
    with pq.ParquetWriter(tmp, schema(d), compression="zstd") as writer:
        for block in clustered_chunks(n, d, n_clusters=n_clusters, seed=seed):
            m = len(block)
            ids = pa.array([f"S{written + i:010d}" for i in range(m)])
            ra = rng.uniform(0.0, 360.0, m)
            dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, m)))  # uniform on the sphere
            emb = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), d)
            mag = rng.normal(19.0, 1.2, m).astype(np.float32)
            z = np.abs(rng.normal(0.1, 0.05, m)).astype(np.float32)
            writer.write_table(pa.Table.from_arrays([ids, pa.array(ra), pa.array(dec), emb,
                                                     pa.array(mag), pa.array(z)], schema=schema(d)))
            written += m
            if progress:
                progress(written, n)
    tmp.replace(path)
    return {"rows": written, "seconds": round(time.perf_counter() - t0, 1), "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    def bar(done, total):
        print(f"\r{done:>12,} / {total:,} rows", end="", flush=True)

    info = write_table(args.out, args.n, args.d, args.seed, progress=bar)
    print(f"\nwrote {args.out}: {info}")


if __name__ == "__main__":
    main()
