"""Active learning on real and simulated galaxies: accuracy against labels, strategies vs random.

    python benchmarks/active_learning.py            # sim (N=5,000) + GZ1 SDSS, SSL embeddings, 3 seeds
    python benchmarks/active_learning.py --quick    # sim N=2,000 + GZ1 with 4-epoch encoders, 1 seed
    python benchmarks/active_learning.py --features pca   # stand-in: PCA of the pixels, no encoder

A simulated oracle answers with the true class: the 3-class morphology task
(elliptical, spiral, edge-on; ml.vocab.TASK3_CLASSES) on
  sim  the simulated SDSS-like survey (benchmarks/datasets.load_sim; mergers dropped),
  gz1  the 6,664 real SDSS cutouts of ../shared/data/gz1_sdss with Galaxy Zoo 1 classes
       (elliptical = 0, spiral = 1 + 2, edge-on = 3; artifacts and mergers dropped).
Features are the frozen SSL embeddings of the encoders engineer (datasets.sim_embeddings /
gz1_embeddings, cached under var/bench/), exactly what the labeling app's heads see.

Each run starts from 20 random labels and adds batches of 20 picked by the strategy
(ml.active.query) after retraining the head; accuracy is measured on a random 20% that
is never queried. Heads: logistic regression for every strategy (what the app trains in
a fraction of a second), plus the MLP ensemble for random, margin, BALD and diverse (BALD
needs an ensemble). Each head is compared with random sampling using the SAME head.

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

import datasets
from active_learning_synthetic import plot_png, run_curves, summarise
from common import RESULTS_DIR, print_table, write_result
from ml.active import labels_saved
from ml.heads import HeadConfig

LOGISTIC_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "diverse", "coreset")
MLP_STRATEGIES = ("random", "margin", "bald", "diverse")
QUICK_STRATEGIES = ("random", "margin", "entropy", "diverse")


def say(message: str) -> None:
    print(message, flush=True)


def pixel_pca(images: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Stand-in features: PCA of 2x-downsampled, per-image-normalised pixels -> (N, dim)."""
    from sklearn.decomposition import PCA
    small = images[:, :, ::2, ::2].reshape(len(images), -1).astype(np.float32)
    small = small / (np.abs(small).max(axis=1, keepdims=True) + 1e-6)
    return PCA(dim, random_state=seed).fit_transform(small).astype(np.float32)


def load_dataset(name: str, features: str, quick: bool, n_sim: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(x (N, D), y (N,) in {0, 1, 2}, description) or None when the data is absent."""
    if name == "sim":
        sim = datasets.load_sim(n_sim, seed=0)
        y = sim.task3
        x = (datasets.sim_embeddings(n=n_sim, seed=0, quick=quick)["sdss_like"] if features == "ssl"
             else pixel_pca(sim.images["sdss_like"]))
        info = {"source": f"simulated SDSS-like survey, N={n_sim}, seed 0", "encoder": "sim recipe (SDSS-like)"}
    elif name == "gz1":
        gz1 = datasets.load_gz1()
        if gz1 is None:
            say("gz1: ../shared/data/gz1_sdss is absent; skipped")
            return None
        y = gz1.task3
        x = datasets.gz1_embeddings(quick=quick) if features == "ssl" else pixel_pca(gz1.images)
        info = {"source": "Galaxy Zoo 1 SDSS cutouts (shared/data/gz1_sdss)", "encoder": "gz1 recipe"}
    else:
        raise ValueError(f"unknown dataset {name!r}")
    keep = y >= 0
    x, y = np.asarray(x, dtype=np.float32)[keep], y[keep]
    info.update(n=int(len(y)), d=int(x.shape[1]), features=features,
                class_counts=np.bincount(y, minlength=3).tolist(), classes=["elliptical", "spiral", "edge-on"])
    return x, y, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="sim N=2000, 4-epoch encoders, 1 seed, logistic only")
    ap.add_argument("--datasets", default="sim,gz1")
    ap.add_argument("--features", default="ssl", choices=["ssl", "pca"])
    ap.add_argument("--heads", default=None, help="comma list of logistic, mlp_ensemble")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--n-sim", type=int, default=None)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--at-labels", type=int, default=None, help="random's label count to match (500)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)                      # shared 2-core machine
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
        loaded = load_dataset(ds, args.features, args.quick, n_sim)
        if loaded is None:
            continue
        x, y, info = loaded
        say(f"{ds}: N={info['n']}, D={info['d']}, classes {info['class_counts']} ({args.features})")
        for head in heads:
            strategies = QUICK_STRATEGIES if args.quick else (LOGISTIC_STRATEGIES if head == "logistic"
                                                              else MLP_STRATEGIES)
            cfg = HeadConfig(kind=head, threads=1)
            started = time.perf_counter()
            curves = run_curves(x, y, strategies, seeds, cfg, args.initial, args.batch, budget, "random")
            summary = summarise(curves, at_labels)
            png = RESULTS_DIR / f"{name}_{ds}_{head}.png"
            plot_png(curves, png, f"{ds} ({args.features}), {head} head, mean of {seeds} seed(s), N={info['n']}")
            results[f"{ds}/{head}"] = {"data": info, "head_config": dataclasses.asdict(cfg), "summary": summary,
                                       "curves": curves, "plot": png.name,
                                       "seconds": time.perf_counter() - started}
            target = next(r[f"acc@{at_labels}"] for r in summary if r["strategy"] == "random")
            balanced = balanced_savings(curves, at_labels)
            for row in summary:
                rows.append({"dataset": ds, "head": head, **_headline(row, at_labels, target),
                             **balanced[row["strategy"]]})
    headers = ["dataset", "head", "strategy", "acc@random_budget", "random_acc_target", "labels_needed",
               "fraction_saved", "seeds_reaching", "bal_acc@random_budget", "labels_needed_bal", "fraction_saved_bal"]
    print_table(rows, headers)
    best = max((r["fraction_saved"] for r in rows if r["strategy"] != "random" and r["fraction_saved"] is not None),
               default=None)
    path = write_result(name, {
        "quick": args.quick, "features": args.features, "seeds": seeds, "n_sim": n_sim,
        "loop": {"initial": args.initial, "batch": args.batch, "budget": budget, "at_labels": at_labels,
                 "initial_strategy": "random", "eval_fraction": 0.2},
        "goal": "at least 50% fewer labels than random to reach random's accuracy at 500 labels",
        "headline": rows, "best_fraction_saved": best, "results": results,
        "seconds": time.perf_counter() - t0})
    say(f"wrote {path}")


def balanced_savings(curves: dict, at_labels: int) -> dict:
    """The same headline on BALANCED accuracy (GZ1 is 72% ellipticals, so plain accuracy
    says little about spirals and edge-ons): mean-over-seeds curves, as in summarise()."""
    def mean(runs):
        return [(n, bal, acc) for n, acc, bal in np.asarray(runs, dtype=np.float64).mean(axis=0)]
    base = mean(curves["random"])
    out = {}
    for strategy, runs in curves.items():
        saved = labels_saved(mean(runs), base, at_labels)
        out[strategy] = {"bal_acc@random_budget": next(b for n, b, _ in mean(runs) if n == at_labels),
                         "random_bal_acc_target": saved["target_accuracy"],
                         "labels_needed_bal": saved["labels_needed"], "fraction_saved_bal": saved["fraction_saved"]}
    return out


def _headline(row: dict, at_labels: int, target: float) -> dict:
    """One table row from summarise(): mean-over-seeds curves (less noisy than single seeds)."""
    saved = row["fraction_saved_of_mean_curves"]
    return {"strategy": row["strategy"], "acc@random_budget": row.get(f"acc@{at_labels}"),
            "random_acc_target": target, "labels_needed": None if saved is None else round(at_labels * (1 - saved)),
            "fraction_saved": saved, "seeds_reaching": row["seeds_reaching"],
            "labels_needed_per_seed": row[f"labels_to_random@{at_labels}"],
            "fraction_saved_per_seed_mean": row["fraction_saved_mean"]}


if __name__ == "__main__":
    main()
