"""Active learning on real and simulated galaxies: accuracy against labels, strategies vs random.

    python benchmarks/active_learning.py                 # reporting split: sim seeds 3-5 + GZ1 half B, SSL
    python benchmarks/active_learning.py --split tuning  # tuning split: sim 0-2 + GZ1 half A (*_tuning.json)
    python benchmarks/active_learning.py --quick         # 1 population, 1 seed, 4-epoch encoders
    python benchmarks/active_learning.py --features pca   # stand-in: PCA of the pixels, no encoder

A simulated oracle answers with the true class on
  sim-sdss, sim-des  the simulated SDSS-like and DES-like surveys (benchmarks/datasets.load_sim)
       with the demo task's 4 classes (elliptical, spiral, edge-on, merger; mergers kept),
  gz1  the real SDSS cutouts of ../shared/data/gz1_sdss with the 3-class task of Galaxy Zoo 1
       classes (elliptical = 0, spiral = 1 + 2, edge-on = 3; artifacts and mergers dropped,
       6,493 of 6,664 rows).
Features are the frozen SSL embeddings of the encoders engineer (datasets.sim_embeddings /
gz1_embeddings, cached under var/bench/), exactly what the labeling app's heads see.

Split (benchmarks/datasets.py): the labeling app's default strategy (and head) is chosen on
--split tuning (simulated populations 0-2, GZ1 half A) and the README quotes --split reporting
(populations 3-5, GZ1 half B: its pool and evaluation rows are only B's galaxies). On the
simulated surveys a "seed" is a whole population with its own encoder (N = datasets.SIM_N);
on GZ1 it is a random start and evaluation set within the half. The app default
(labeling Task: strategy "margin", head "mlp_ensemble", as the task form and the demo task) is the headline of the reporting
split; the best strategy picked with hindsight is shown beside it, labelled.

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
from common import goal as common_goal
from ml.active import labels_saved
from ml.heads import HeadConfig

LOGISTIC_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "diverse", "coreset")
MLP_STRATEGIES = ("random", "entropy", "margin", "bald")   # the ensemble costs ~20x a logistic fit per round
APP_DEFAULT = ("margin", "mlp_ensemble")   # webapp.labeling Task.strategy, the task form and the demo task
GOAL_FRACTION = 0.5
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


def load_dataset(name: str, features: str, quick: bool, n_sim: int, split: str, sim_seed: int = 0,
                 gz1_epochs: int | None = None) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(x (N, D), y (N,), description) or None when the data is absent.

    sim-sdss / sim-des: simulated population ``sim_seed`` with the demo task's 4 classes (mergers
    included; one encoder trained on its SDSS-like images embeds both); gz1: the real SDSS
    cutouts of the split's half with the 3-class task (encoder: all GZ1 images, no labels)."""
    if name in ("sim-sdss", "sim-des"):
        survey = {"sim-sdss": "sdss_like", "sim-des": "des_like"}[name]
        sim = datasets.load_sim(n_sim, seed=sim_seed)
        y = np.array([SIM_CLASSES.index(c) if c in SIM_CLASSES else -1 for c in sim.truth["class"]])
        x = (datasets.sim_embeddings(n=n_sim, seed=sim_seed, quick=quick)[survey] if features == "ssl"
             else pixel_pca(sim.images[survey]))
        info = {"source": f"simulated {survey} survey, N={n_sim}, population seed {sim_seed}",
                "classes": list(SIM_CLASSES)}
    elif name == "gz1":
        gz1 = datasets.load_gz1()
        if gz1 is None:
            say("gz1: ../shared/data/gz1_sdss is absent; skipped")
            return None
        half = datasets.gz1_split_mask(gz1, split)
        overrides = {"epochs": gz1_epochs} if gz1_epochs else {}
        x = datasets.gz1_embeddings(quick=quick, **overrides) if features == "ssl" else pixel_pca(gz1.images)
        x, y = np.asarray(x)[half], gz1.task3[half]
        recipe = datasets.recipe(datasets.GZ1_RECIPE, quick, **overrides)
        info = {"source": f"Galaxy Zoo 1 SDSS cutouts (shared/data/gz1_sdss), half {datasets.GZ1_HALVES[split]}, "
                          "GZ1 classes 0 / 1+2 / 3",
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


def recommend(rows: list[dict]) -> dict:
    """Per head: the strategy with the best mean fraction of labels saved over the datasets (a
    strategy that never reaches random's accuracy counts 0) -- for --split tuning, where it picks
    the labeling app's default."""
    out = {}
    for head in dict.fromkeys(r["head"] for r in rows):
        by: dict[str, list] = {}
        for r in rows:
            if r["head"] == head and r["strategy"] != "random":
                by.setdefault(r["strategy"], []).append(r["fraction_saved"] or 0.0)
        n = max(len(v) for v in by.values())
        means = {k: round(float(np.mean(v)), 3) for k, v in by.items() if len(v) == n}
        best = max(means, key=means.get)
        out[head] = {"best": best, "mean_fraction_saved": means[best],
                     "datasets": sorted({r["dataset"] for r in rows if r["head"] == head}),
                     "all": dict(sorted(means.items(), key=lambda kv: -kv[1]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    datasets.add_split_arguments(ap, "1 population / seed, 4-epoch encoders, logistic only")
    ap.add_argument("--datasets", default="sim-sdss,sim-des,gz1")
    ap.add_argument("--features", default="ssl", choices=["ssl", "pca"])
    ap.add_argument("--heads", default=None, help="comma list of logistic, mlp_ensemble")
    ap.add_argument("--gz1-epochs", type=int, default=None,
                    help="epochs of the GZ1 encoder (default: the datasets recipe's; 4 reuses the quick one)")
    ap.add_argument("--mlp-datasets", default="sim-sdss,gz1", help="datasets that also get the MLP-ensemble head")
    ap.add_argument("--seeds", type=int, default=None, help="GZ1 runs (random start + evaluation set; default 3)")
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
    n_sim = args.n_sim or datasets.SIM_N
    sim_seeds = datasets.sim_seeds_to_run(args, ap)
    budget = args.budget or (300 if args.quick else 600)
    at_labels = args.at_labels or (200 if args.quick else 500)
    at_labels = args.initial + args.batch * ((at_labels - args.initial) // args.batch)   # a point on the curve
    heads = tuple(args.heads.split(",")) if args.heads else (("logistic",) if args.quick
                                                             else ("logistic", "mlp_ensemble"))
    name = args.name or ("active_learning_quick" if args.quick else "active_learning") + \
        ("" if args.features == "ssl" else f"_{args.features}") + ("_tuning" if args.split == "tuning" else "")
    t0 = time.perf_counter()
    results, rows = {}, []
    for ds in args.datasets.split(","):
        # one (x, y, loop seeds) per simulated population of the split; GZ1: the half, `seeds` runs
        if ds.startswith("sim"):
            parts = [(load_dataset(ds, args.features, args.quick, n_sim, args.split, s), [s]) for s in sim_seeds]
        else:
            parts = [(load_dataset(ds, args.features, args.quick, n_sim, args.split, gz1_epochs=args.gz1_epochs),
                      list(range(seeds)))]
        parts = [(p, s) for p, s in parts if p is not None]
        if not parts:
            continue
        info = dict(parts[0][0][2])
        if ds.startswith("sim"):
            info["source"] = info["source"].rsplit(", population seed", 1)[0] + f", population seeds {sim_seeds}"
            info["n_per_population"] = [p[2]["n"] for p, _ in parts]
            info["class_counts"] = np.sum([p[2]["class_counts"] for p, _ in parts], axis=0).tolist()
        say(f"{ds}: N={info['n']}, D={info['d']}, classes {info['class_counts']} ({args.features})")
        for head in heads:
            if head == "mlp_ensemble" and ds not in args.mlp_datasets.split(","):
                continue
            strategies = QUICK_STRATEGIES if args.quick else (LOGISTIC_STRATEGIES if head == "logistic"
                                                              else MLP_STRATEGIES)
            cfg = HeadConfig(kind=head, threads=1)
            started = time.perf_counter()
            curves: dict = {}
            for (x, y, _), loop_seeds in parts:
                for strategy, runs in run_curves(x, y, strategies, loop_seeds, cfg, args.initial, args.batch,
                                                 budget, "random").items():
                    curves.setdefault(strategy, []).extend(runs)
            summary = summarise_curves(curves, at_labels)
            png = RESULTS_DIR / f"{name}_{ds}_{head}.png"
            plot_png(curves, png, f"{ds} ({args.features}, {args.split} split), {head} head, "
                                  f"mean of {len(next(iter(curves.values())))} run(s), N={info['n']}")
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
        say(f"{key}: best (hindsight) {b['strategy']} needs {b['labels_needed']} labels for random's accuracy at "
            f"{at_labels} ({100 * b['fraction_saved']:.0f}% fewer; goal 50%)")
    app = {r["dataset"]: r for r in rows if (r["strategy"], r["head"]) == APP_DEFAULT}
    goals = {f"labels_saved_fraction[{ds}]": common_goal(r["fraction_saved"] or 0.0, f">= {GOAL_FRACTION:g}")
             for ds, r in app.items()}
    for ds, r in app.items():
        say(f"{ds}: app default {APP_DEFAULT[0]}/{APP_DEFAULT[1]} needs {r['labels_needed']} labels "
            f"(fraction saved {r['fraction_saved']}; never reaching it counts as 0)")
    recommendation = recommend(rows)
    for head, rec in recommendation.items():
        say(f"{args.split} split, {head} head: best strategy {rec['best']} (mean fraction saved "
            f"{rec['mean_fraction_saved']}); app default {APP_DEFAULT[0]} {rec['all'].get(APP_DEFAULT[0])}")
    path = write_result(name, {
        "quick": args.quick, **datasets.split_info(args.split), "sim_seeds_run": sim_seeds,
        "goals": goals, "app_default": {"strategy": APP_DEFAULT[0], "head": APP_DEFAULT[1]},
        "recommendation": recommendation,
        "features": args.features, "gz1_runs": seeds, "n_sim": n_sim,
        "gz1_encoder_epochs": args.gz1_epochs, "sim_recipe": dataclasses.asdict(datasets.SIM_RECIPE),
        "loop": {"initial": args.initial, "batch": args.batch, "budget": budget, "at_labels": at_labels,
                 "initial_strategy": "random", "eval_fraction": 0.2},
        "goal": "at least 50% fewer labels than random to reach random's accuracy at 500 labels",
        "headline": rows, "best_with_hindsight": best, "results": results,
        "seconds": time.perf_counter() - t0})
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
