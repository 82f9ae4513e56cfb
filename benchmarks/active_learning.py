"""Active learning on real and simulated galaxies: accuracy against labels, strategies vs random.

    python benchmarks/active_learning.py            # sim (N=5,000) + GZ1 SDSS, SSL embeddings, 3 seeds
    python benchmarks/active_learning.py --quick    # sim N=2,000 + GZ1 with 4-epoch encoders, 1 seed
    python benchmarks/active_learning.py --features pca   # stand-in: PCA of the pixels, no encoder

A simulated oracle answers with the true class on
  sim-sdss, sim-des  the simulated SDSS-like and DES-like surveys (benchmarks/datasets.load_sim)
       with the demo task's 4 classes (elliptical, spiral, edge-on, merger; mergers kept),
  gz1  the real SDSS cutouts of ../shared/data/gz1_sdss with the 3-class task of Galaxy Zoo 1
       classes (elliptical = 0, spiral = 1 + 2, edge-on = 3; artifacts and mergers dropped,
       6,493 of 6,664 rows).
Features are the frozen SSL embeddings of the encoders engineer (datasets.sim_embeddings /
gz1_embeddings, cached under var/bench/), exactly what the labeling app's heads see.

Each run starts from 20 random labels and adds batches of 20 picked by the strategy
(ml.active.query) after retraining the head; accuracy is measured on a random 20% that
is never queried. Heads: logistic regression for every strategy (what the app trains in
a fraction of a second), plus the MLP ensemble (the app's default head) for random, margin
and BALD (BALD needs an ensemble) on sim-sdss and GZ1. Each head is compared with random
sampling using the SAME head.

Headline: labels each strategy needs to reach random's accuracy at 500 labels (goal: at
least 50% fewer; Walmsley et al. 2020 report 35-60%). Writes
benchmarks/results/active_learning.json and one PNG of the curves per dataset and head.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import datasets
from active_learning_synthetic import plot_png, run_curves
from common import RESULTS_DIR, print_table, write_result
from ml.active import labels_saved
from ml.heads import HeadConfig

LOGISTIC_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "diverse", "coreset")
MLP_STRATEGIES = ("random", "margin", "bald")       # the ensemble costs ~20x a logistic fit per round
QUICK_STRATEGIES = ("random", "margin", "entropy", "diverse")


def say(message: str) -> None:
    print(message, flush=True)


def pixel_pca(images: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Stand-in features: PCA of 2x-downsampled, per-image-normalised pixels -> (N, dim)."""
    from sklearn.decomposition import PCA
    small = images[:, :, ::2, ::2].reshape(len(images), -1).astype(np.float32)
    small = small / (np.abs(small).max(axis=1, keepdims=True) + 1e-6)
    return PCA(dim, random_state=seed).fit_transform(small).astype(np.float32)


SIM_CLASSES = ("elliptical", "spiral", "edge_on", "merger")   # the demo task's four classes
TASK3 = ["elliptical", "spiral", "edge-on"]


def load_dataset(name: str, features: str, quick: bool, n_sim: int,
                 gz1_epochs: int | None = None) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(x (N, D), y (N,), description) or None when the data is absent.

    sim-sdss / sim-des: the simulated surveys with the demo task's 4 classes (mergers
    included; one encoder trained on the SDSS-like images embeds both); gz1: the real SDSS
    cutouts with the 3-class task."""
    if name in ("sim-sdss", "sim-des"):
        survey = {"sim-sdss": "sdss_like", "sim-des": "des_like"}[name]
        sim = datasets.load_sim(n_sim, seed=0)
        y = np.array([SIM_CLASSES.index(c) if c in SIM_CLASSES else -1 for c in sim.truth["class"]])
        x = (datasets.sim_embeddings(n=n_sim, seed=0, quick=quick)[survey] if features == "ssl"
             else pixel_pca(sim.images[survey]))
        info = {"source": f"simulated {survey} survey, N={n_sim}, seed 0", "classes": list(SIM_CLASSES)}
    elif name == "gz1":
        gz1 = datasets.load_gz1()
        if gz1 is None:
            say("gz1: ../shared/data/gz1_sdss is absent; skipped")
            return None
        y = gz1.task3
        overrides = {"epochs": gz1_epochs} if gz1_epochs else {}
        x = datasets.gz1_embeddings(quick=quick, **overrides) if features == "ssl" else pixel_pca(gz1.images)
        recipe = datasets.recipe(datasets.GZ1_RECIPE, quick, **overrides)
        info = {"source": "Galaxy Zoo 1 SDSS cutouts (shared/data/gz1_sdss), GZ1 classes 0 / 1+2 / 3",
                "classes": TASK3, "encoder_epochs": recipe.epochs if features == "ssl" else None}
    else:
        raise ValueError(f"unknown dataset {name!r}")
    keep = y >= 0
    x, y = np.asarray(x, dtype=np.float32)[keep], y[keep]
    info.update(n=int(len(y)), d=int(x.shape[1]), features=features,
                class_counts=np.bincount(y, minlength=len(info["classes"])).tolist())
    return x, y, info


def summarise_curves(curves: dict, at_labels: int) -> list[dict]:
    """Per strategy, on the mean-over-seeds curves: accuracy and balanced accuracy at random's
    budget, and the labels needed to reach random's value there -- SUSTAINED (stays at or above
    it from then up to random's budget; the headline) and first touch (noisier) -- plus per seed."""
    def mean(runs, metric):          # [(n, value, other)] with value = accuracy or balanced accuracy
        arr = np.asarray(runs, dtype=np.float64).mean(axis=0)
        return [(int(n), a if metric == "acc" else b, 0.0) for n, a, b in arr]
    rows = []
    for strategy, runs in curves.items():
        row = {"strategy": strategy}
        for metric in ("acc", "bal"):
            curve, base = mean(runs, metric), mean(curves["random"], metric)
            upto = [p for p in curve if p[0] <= at_labels]           # "stays above" up to random's budget
            sustained = labels_saved(upto, base, at_labels, sustained=True)
            first = labels_saved(curve, base, at_labels)
            suffix = "" if metric == "acc" else "_bal"
            row.update({f"{metric}@budget": next(v for n, v, _ in curve if n == at_labels),
                        f"target{suffix}": sustained["target_accuracy"],
                        f"labels_needed{suffix}": sustained["labels_needed"],
                        f"fraction_saved{suffix}": sustained["fraction_saved"],
                        f"labels_first_touch{suffix}": first["labels_needed"]})
        per_seed = [labels_saved([tuple(p) for p in c if p[0] <= at_labels], [tuple(p) for p in b], at_labels,
                                 sustained=True)
                    for c, b in zip(runs, curves["random"])]
        row["labels_needed_per_seed"] = [p["labels_needed"] for p in per_seed]
        row["acc@end"] = float(np.asarray(runs)[:, -1, 1].mean())
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="sim N=2000, 4-epoch encoders, 1 seed, logistic only")
    ap.add_argument("--datasets", default="sim-sdss,sim-des,gz1")
    ap.add_argument("--features", default="ssl", choices=["ssl", "pca"])
    ap.add_argument("--heads", default=None, help="comma list of logistic, mlp_ensemble")
    ap.add_argument("--gz1-epochs", type=int, default=None,
                    help="epochs of the GZ1 encoder (default: the datasets recipe's; 4 reuses the quick one)")
    ap.add_argument("--mlp-datasets", default="sim-sdss,gz1", help="datasets that also get the MLP-ensemble head")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--n-sim", type=int, default=None)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--at-labels", type=int, default=None, help="random's label count to match (500)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)                      # shared 2-core machine: one thread per experiment
    threadpool_limits(1)                          # BLAS too: 2 contending threads made logistic fits 6x slower
    seeds = args.seeds or (1 if args.quick else 3)
    n_sim = args.n_sim or (2000 if args.quick else 5000)
    budget = args.budget or (300 if args.quick else 600)
    at_labels = args.at_labels or (200 if args.quick else 500)
    at_labels = args.initial + args.batch * ((at_labels - args.initial) // args.batch)   # a point on the curve
    heads = tuple(args.heads.split(",")) if args.heads else (("logistic",) if args.quick
                                                             else ("logistic", "mlp_ensemble"))
    name = args.name or ("active_learning_quick" if args.quick else "active_learning") + \
        ("" if args.features == "ssl" else f"_{args.features}")
    t0 = time.perf_counter()
    results, rows = {}, []
    for ds in args.datasets.split(","):
        loaded = load_dataset(ds, args.features, args.quick, n_sim, args.gz1_epochs)
        if loaded is None:
            continue
        x, y, info = loaded
        say(f"{ds}: N={info['n']}, D={info['d']}, classes {info['class_counts']} ({args.features})")
        for head in heads:
            if head == "mlp_ensemble" and ds not in args.mlp_datasets.split(","):
                continue
            strategies = QUICK_STRATEGIES if args.quick else (LOGISTIC_STRATEGIES if head == "logistic"
                                                              else MLP_STRATEGIES)
            cfg = HeadConfig(kind=head, threads=1)
            started = time.perf_counter()
            curves = run_curves(x, y, strategies, seeds, cfg, args.initial, args.batch, budget, "random")
            summary = summarise_curves(curves, at_labels)
            png = RESULTS_DIR / f"{name}_{ds}_{head}.png"
            plot_png(curves, png, f"{ds} ({args.features}), {head} head, mean of {seeds} seed(s), N={info['n']}")
            results[f"{ds}/{head}"] = {"data": info, "head_config": dataclasses.asdict(cfg), "summary": summary,
                                       "curves": curves, "plot": png.name,
                                       "seconds": time.perf_counter() - started}
            for row in summary:
                rows.append({"dataset": ds, "head": head, **row})
    headers = ["dataset", "head", "strategy", "acc@budget", "target", "labels_needed", "fraction_saved",
               "labels_first_touch", "bal@budget", "labels_needed_bal", "fraction_saved_bal", "labels_needed_per_seed"]
    print_table(rows, headers)
    best = {}
    for r in rows:
        if r["strategy"] != "random" and r["fraction_saved"] is not None:
            key = f"{r['dataset']}/{r['head']}"
            if r["fraction_saved"] > best.get(key, {}).get("fraction_saved", -1):
                best[key] = {"strategy": r["strategy"], "fraction_saved": r["fraction_saved"],
                             "labels_needed": r["labels_needed"]}
    for key, b in best.items():
        say(f"{key}: best {b['strategy']} needs {b['labels_needed']} labels for random's accuracy at {at_labels} "
            f"({100 * b['fraction_saved']:.0f}% fewer; goal 50%)")
    path = write_result(name, {
        "quick": args.quick, "features": args.features, "seeds": seeds, "n_sim": n_sim,
        "gz1_encoder_epochs": args.gz1_epochs, "sim_recipe": dataclasses.asdict(datasets.SIM_RECIPE),
        "loop": {"initial": args.initial, "batch": args.batch, "budget": budget, "at_labels": at_labels,
                 "initial_strategy": "random", "eval_fraction": 0.2},
        "goal": "at least 50% fewer labels than random to reach random's accuracy at 500 labels",
        "headline": rows, "best": best, "results": results,
        "seconds": time.perf_counter() - t0})
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
