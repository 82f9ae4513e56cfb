"""Map tiles: build time at N points (+ colour layers) and the cost of one tile request.

    python benchmarks/map_tiles.py                  # N = 1e6, one numeric and one categorical layer
    python benchmarks/map_tiles.py --n 10000000     # 1e7 (about 2 GB of RAM while building)

Data: a synthetic clustered 2-D layout (the shape of a UMAP map: Gaussian blobs of uneven size
and width), galaxy ids, RA/Dec, a numeric layer (a magnitude) and a categorical one (10 classes).
Build: ml.tiles.build_tiles with the default TileConfig (256 px tiles, density levels 0..4,
2,048 points per point tile) plus the HEALPix sky levels (ml.healpix_density), as the
map_tiles job does.  Requests: what the tile endpoint does per call, server side, without
HTTP (read the tile from the memory-mapped files, encode PNG / pack the binary points):
p50/p95 over random non-empty tiles, zoomed out (levels 0-1) and deep (the deepest level).
Prints a table; writes no results file.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml import healpix_density  # noqa: E402
from ml.tiles import LayerInput, TileConfig, TileReader, build_tiles  # noqa: E402

PALETTES = {"numeric": ["#440154", "#21918c", "#fde725"], "categorical": ["#1f77b4", "#ff7f0e", "#2ca02c"]}


def layout(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = 60
    centres = rng.uniform(-9, 9, size=(k, 2))
    widths = rng.uniform(0.1, 1.0, k)
    lab = rng.choice(k, n, p=rng.dirichlet(np.full(k, 1.5)))
    return (centres[lab] + widths[lab, None] * rng.normal(size=(n, 2))).astype(np.float32)


def timed(fn, calls) -> tuple[float, float]:
    out = []
    for args in calls:
        t = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(out, 50)), float(np.percentile(out, 95))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django
    django.setup()
    from webapp.embeddings.services.map_tiles import _shade_counts, _shade_layer  # pure helpers, no Django setup
    from webapp.embeddings.services.map_data import pack_binary

    n = args.n
    xy = layout(n)
    rng = np.random.default_rng(1)
    ids = np.arange(n, dtype=np.int64) + 1
    radec = np.stack([rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))], axis=1)
    layers = [LayerInput("mag", "numeric", rng.normal(20, 1.5, n).astype(np.float32)),
              LayerInput("class", "categorical", rng.integers(0, 10, n).astype(np.float32), 10)]
    root = Path(tempfile.mkdtemp(prefix="tiles-bench-"))
    try:
        _ = build_tiles(root / "warm", xy[:5000], ids[:5000], radec[:5000], layers=[], cfg=TileConfig())  # numba
        print(f"N={n:,} loadavg={os.getloadavg()[0]:.1f}", flush=True)
        t = time.perf_counter()
        (root / "t" / "sky").mkdir(parents=True)
        healpix_density.build_levels(radec[:, 0], radec[:, 1], 10, root / "t" / "sky")
        t_sky = time.perf_counter() - t
        t = time.perf_counter()
        manifest = build_tiles(root / "t", xy, ids, radec, layers, TileConfig())
        t_build = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (root / "t").rglob("*") if f.is_file())
        print(f"build: tiles {t_build:.1f} s + HEALPix sky {t_sky:.1f} s; {size / 1e6:.0f} MB on disk; "
              f"density levels 0..{manifest['density_levels']}, point levels 0..{manifest['point_levels']}; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)

        tr = TileReader(root / "t")

        def nonempty(z: int, kind: str) -> list[tuple[int, int, int]]:
            keys = np.load(root / "t" / f"{'dkeys' if kind == 'density' else 'pkeys'}-{z}.npy")
            pick = rng.choice(keys, args.requests)
            return [(z, int(k) % (1 << z), int(k) // (1 << z)) for k in pick]

        def density(z, x, y):
            _shade_counts(tr.density_tile(z, x, y), manifest["peaks"][z])

        def layer(z, x, y):
            _shade_layer(tr.density_tile(z, x, y, "mag"), {"kind": "numeric", "low": 17, "high": 23}, PALETTES)

        def points(z, x, y):
            pts, total = tr.point_tile(z, x, y)
            c = tr.column("class", pts["row"])
            pack_binary({"row": pts["row"].astype(np.uint32), "id": pts["id"].astype(np.int32), "x": pts["x"],
                         "y": pts["y"], "ra": pts["ra"], "dec": pts["dec"], "c": c})

        def png(z, x, y):  # the full density response: shade + PNG encode
            import io

            from PIL import Image
            buf = io.BytesIO()
            rgba = _shade_counts(tr.density_tile(z, x, y), manifest["peaks"][z])
            Image.fromarray(np.ascontiguousarray(rgba[::-1]), "RGBA").save(buf, format="PNG", compress_level=1)

        deep_d, deep_p = manifest["density_levels"], manifest["point_levels"]
        print(f"\n{'request':34s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, fn, calls in [
            ("density PNG, zoomed out (z=1)", png, nonempty(1, "density")),
            (f"density PNG, deep (z={deep_d})", png, nonempty(deep_d, "density")),
            ("layer aggregate shade (z=1)", layer, nonempty(1, "density")),
            ("point tile + colour, zoomed out (z=1)", points, nonempty(1, "points")),
            (f"point tile + colour, deep (z={deep_p})", points, nonempty(deep_p, "points")),
        ]:
            p50, p95 = timed(fn, calls)
            print(f"{name:34s} {p50:8.2f} {p95:8.2f}", flush=True)
        sky = [(np.sort(rng.uniform(0, 360, 2)), np.sort(rng.uniform(-80, 80, 2))) for _ in range(50)]
        p50, p95 = timed(lambda r, d: healpix_density.raster(root / "t" / "sky", 10, (r[0], d[0], r[1], d[1]), 256, 256),
                         sky)
        print(f"{'sky HEALPix raster 256x256':34s} {p50:8.2f} {p95:8.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
