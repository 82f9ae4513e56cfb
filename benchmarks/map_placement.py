"""Placing the rows of a large map: umap's own transform against the parametric MLP (ml/parametric.py).

    python benchmarks/map_placement.py --split tuning     # seed 0: the split the MLP default was chosen on
    python benchmarks/map_placement.py --split reporting  # seed 3: figures to report (never tuned on)
    python benchmarks/map_placement.py --n 20000 --sample 5000 --seed 7   # any other seed

Data: synthetic clustered 128-d vectors (benchmarks/search.py's generator; --split follows
benchmarks/datasets.py: tuning = seed 0, the split the default was chosen on; reporting = seed 3).  Three layouts of the same N
rows: a full UMAP fitted on all of them (the reference), and UMAP fitted on a random sample with
the other rows placed by (a) umap.transform and (b) the MLP.  Quality on a random subsample of
--eval rows (5,000: trustworthiness is O(eval^2)): sklearn's trustworthiness (k=10, cosine in the
embedding space), the k-NN preservation (share of each row's 10 nearest neighbours in the vectors
that are also among its 10 nearest on the map) and the k-NN agreement with the full UMAP layout.
umap.transform places only the evaluation rows (it is ~50 ms a row on 2 cores; its time is per
row either way); the MLP places every held-out row.  Writes benchmarks/results/map_placement[_SPLIT].json
with goals: the default (MLP) within 0.01 trustworthiness of the full UMAP, and placing 10^5 rows
in under 60 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import goal, machine_info, write_result  # noqa: E402
from datasets import SIM_SEEDS  # noqa: E402
from benchmarks.search import clustered_vectors  # noqa: E402
from ml.parametric import MLPConfig, fit_mlp  # noqa: E402
from ml.projection import UMAPConfig, fit_projection  # noqa: E402


def knn(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors
    return NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(x).kneighbors(x, return_distance=False)[:, 1:]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(r) & set(s)) / len(r) for r, s in zip(a, b)]))


def quality(x: np.ndarray, layout: np.ndarray, ref_knn2d: np.ndarray | None, hi_knn: np.ndarray, k: int) -> dict:
    from sklearn.manifold import trustworthiness
    lo = knn(layout, k, "euclidean")
    out = {"trust": trustworthiness(x, layout, n_neighbors=k, metric="cosine"), "knn_keep": overlap(hi_knn, lo)}
    out["vs_full"] = overlap(ref_knn2d, lo) if ref_knn2d is not None else 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--sample", type=int, default=5_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--eval", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=None, help="data seed (default: the --split's first seed)")
    ap.add_argument("--split", choices=sorted(SIM_SEEDS), default="tuning")
    ap.add_argument("--epochs", type=int, default=MLPConfig.epochs)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = SIM_SEEDS[args.split][0]
    x = clustered_vectors(args.n, args.dim, n_clusters=max(10, args.n // 1000), seed=args.seed)
    print(f"N={args.n:,} D={args.dim} sample={args.sample:,} seed={args.seed} loadavg={os.getloadavg()[0]:.1f}", flush=True)
    warm = fit_projection(x[:2000], UMAPConfig(n_epochs=10))  # numba compilation, not timed
    warm.reducer.transform(x[2000:2100])

    t = time.perf_counter()
    full = fit_projection(x, UMAPConfig(sample_threshold=args.n)).sample_coords
    t_full = time.perf_counter() - t
    print(f"full UMAP on {args.n:,}: {t_full:.1f} s", flush=True)

    cfg = UMAPConfig(sample_threshold=args.sample - 1, sample_size=args.sample)
    t = time.perf_counter()
    fitted = fit_projection(x, cfg)
    t_fit = time.perf_counter() - t
    rest = np.setdiff1d(np.arange(args.n), fitted.sample_rows)
    print(f"UMAP fit on the sample of {args.sample:,}: {t_fit:.1f} s", flush=True)

    rng = np.random.default_rng(123)
    ev = np.sort(rng.choice(rest, min(args.eval, len(rest)), replace=False))  # held-out rows only
    t = time.perf_counter()
    placed_umap = fitted.normalise(fitted.reducer.transform(x[ev]))
    t_umap = time.perf_counter() - t
    print(f"umap.transform of {len(ev):,} evaluation rows: {t_umap:.1f} s", flush=True)

    t = time.perf_counter()
    mlp = fit_mlp(x[fitted.sample_rows], fitted.sample_coords, MLPConfig(epochs=args.epochs))
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    placed_mlp = mlp.predict(x[rest])
    t_mlp = time.perf_counter() - t
    print(f"MLP train {t_train:.1f} s (loss {mlp.final_loss:.4f}), predict {len(rest):,}: {t_mlp:.2f} s", flush=True)

    layouts = {"full UMAP (reference)": full[ev]}
    mlp_coords = np.empty((args.n, 2), np.float32)
    mlp_coords[fitted.sample_rows], mlp_coords[rest] = fitted.sample_coords, placed_mlp
    layouts["sample + umap.transform"] = placed_umap
    layouts["sample + MLP (default)"] = mlp_coords[ev]
    hi = knn(x[ev], args.k, "cosine")
    ref = knn(full[ev], args.k, "euclidean")
    per_1e5 = {"sample + umap.transform": t_umap / len(ev) * 1e5, "sample + MLP (default)": t_mlp / len(rest) * 1e5}
    print(f"\n{'layout':28s} {'trust@10':>9s} {'kNN kept':>9s} {'kNN = full':>10s} {'place s/1e5':>12s}")
    rows = {}
    for name, coords in layouts.items():
        q = quality(x[ev], coords, ref, hi, args.k)
        place = per_1e5.get(name)
        rows[name] = {**{k: round(float(v), 4) for k, v in q.items()},
                      "place_seconds_per_1e5": None if place is None else round(place, 2)}
        print(f"{name:28s} {q['trust']:9.3f} {q['knn_keep']:9.3f} {q['vs_full']:10.3f} "
              f"{(f'{place:.1f}' if place is not None else '-'):>12s}")
    print(f"\n(eval: {len(ev):,} held-out rows; full UMAP {t_full:.0f} s, sample fit {t_fit:.0f} s, MLP training {t_train:.0f} s)")
    gap = rows["full UMAP (reference)"]["trust"] - rows["sample + MLP (default)"]["trust"]
    name = "map_placement" if args.split == "reporting" else f"map_placement_{args.split}"
    path = write_result(name, {
        "split": args.split, "seed": args.seed, "n": args.n, "sample": args.sample, "dim": args.dim,
        "eval_rows": int(len(ev)), "k": args.k, "layouts": rows,
        "seconds": {"full_umap": round(t_full, 1), "sample_fit": round(t_fit, 1), "mlp_train": round(t_train, 1)},
        "machine_load": machine_info().get("loadavg"),
        "goals": {
            f"mlp_trust_gap_vs_full[{args.split}]": goal(round(gap, 4), "<= 0.01"),
            f"mlp_place_seconds_per_1e5[{args.split}]": goal(rows["sample + MLP (default)"]["place_seconds_per_1e5"],
                                                             "< 60"),
        }})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
