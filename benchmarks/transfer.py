"""Survey A -> B: a head trained on the SDSS-like survey, used and adapted on the DES-like one.

    python benchmarks/transfer.py            # N=5,000 objects, SSL embeddings, 5 seeds
    python benchmarks/transfer.py --quick    # N=2,000, 4-epoch encoder, 2 seeds
    python benchmarks/transfer.py --features pca   # stand-in: pixel PCA fitted on survey A

The same simulated objects are imaged by both surveys (benchmarks/datasets.load_sim), and
one encoder -- trained on survey A's images only -- embeds both into one space
(datasets.sim_embeddings). Task: elliptical / spiral / edge-on (mergers dropped).

Per seed the objects are split: 30% EVALUATION objects (never used for training in either
survey), the rest are the training objects. The source head (MLP ensemble, as in the app)
learns every training object's survey-A label ("all labels"). On survey B's evaluation
objects we then measure:
  direct                the source head on B's embeddings as they are;
  direct + align        per-survey standardisation of B's embeddings (unlabelled, costs no labels);
  adapted (n labels)    ml.adapt.adapt_head with n random B labels from the training objects,
                        for n = 25, 50, 100, 300: fine-tuning or refit, standardise or CORAL;
  target only (n)       a fresh head on the same n B labels (what adaptation must beat);
  B ceiling             a head on every training object's B label.
Goal: >= 95% accuracy on B with <= 100 target labels (Dominguez Sanchez et al. 2019
needed 300-500 labels from SDSS to DES to pass 95%). Writes benchmarks/results/transfer.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import datasets
from common import print_table, write_result
from ml.adapt import AdaptConfig, adapt_head, alignment
from ml.heads import Head, HeadConfig, feature_stats, fit_classifier
from ml.metrics import accuracy, balanced_accuracy

TARGET_LABELS = (25, 50, 100, 300)
ADAPTERS = {   # name: AdaptConfig
    "finetune+standardise": AdaptConfig(method="finetune", align="standardise"),
    "finetune+coral": AdaptConfig(method="finetune", align="coral"),
    "refit+standardise": AdaptConfig(method="refit", align="standardise"),
}
QUICK_ADAPTERS = ("finetune+standardise",)
EVAL_FRACTION = 0.3


def say(message: str) -> None:
    print(message, flush=True)


def features(kind: str, n: int, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_a (N, D), x_b (N, D), y (N,)) for the task3 objects of the simulated population."""
    sim = datasets.load_sim(n, seed=0)
    y = sim.task3
    if kind == "ssl":
        emb = datasets.sim_embeddings(n=n, seed=0, quick=quick)
        x_a, x_b = emb["sdss_like"], emb["des_like"]
    else:   # stand-in: one PCA basis fitted on survey A, applied to both
        from sklearn.decomposition import PCA

        def flat(images):
            small = images[:, :, ::2, ::2].reshape(len(images), -1).astype(np.float32)
            return small / (np.abs(small).max(axis=1, keepdims=True) + 1e-6)
        pca = PCA(64, random_state=0).fit(flat(sim.images["sdss_like"]))
        x_a, x_b = pca.transform(flat(sim.images["sdss_like"])), pca.transform(flat(sim.images["des_like"]))
    keep = y >= 0
    return np.asarray(x_a, np.float32)[keep], np.asarray(x_b, np.float32)[keep], y[keep]


def scores(head, x, y) -> dict:
    pred = head.predict_proba(x).argmax(axis=1)
    return {"accuracy": accuracy(y, pred), "balanced_accuracy": balanced_accuracy(y, pred)}


def aligned_only(head: Head, x_a_train: np.ndarray, x_b_all: np.ndarray) -> Head:
    """The source head with survey B mapped into A's frame by per-survey standardisation."""
    arrays = dict(head.arrays)
    arrays["align_a"], arrays["align_b"] = alignment(feature_stats(x_a_train), feature_stats(x_b_all), "standardise")
    return Head(head.cfg, head.n_classes, arrays, head.temperature)


def run_seed(x_a, x_b, y, seed: int, cfg: HeadConfig, adapters: dict, label_counts) -> list[dict]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_eval = int(EVAL_FRACTION * len(y))
    ev, train = order[:n_eval], order[n_eval:]
    cfg = dataclasses.replace(cfg, seed=seed)
    t0 = time.perf_counter()
    source = fit_classifier(x_a[train], y[train], 3, cfg, x_all=x_a)
    rows = [{"method": "source on A (reference)", "n_target": 0, **scores(source, x_a[ev], y[ev]),
             "seconds": time.perf_counter() - t0},
            {"method": "direct", "n_target": 0, **scores(source, x_b[ev], y[ev])},
            {"method": "direct + align", "n_target": 0,
             **scores(aligned_only(source, x_a[train], x_b), x_b[ev], y[ev])}]
    for n in label_counts:
        pick = rng.choice(train, size=n, replace=False)           # random target labels
        for name, acfg in adapters.items():
            t0 = time.perf_counter()
            head = adapt_head(source, x_b[pick], y[pick], acfg, x_source=x_a[train], y_source=y[train],
                              x_target_all=x_b)
            rows.append({"method": f"adapted: {name}", "n_target": n, **scores(head, x_b[ev], y[ev]),
                         "seconds": time.perf_counter() - t0})
        scratch = fit_classifier(x_b[pick], y[pick], 3, cfg, x_all=x_b)
        rows.append({"method": "target only", "n_target": n, **scores(scratch, x_b[ev], y[ev])})
    ceiling = fit_classifier(x_b[train], y[train], 3, cfg, x_all=x_b)
    rows.append({"method": "B ceiling (all B labels)", "n_target": len(train), **scores(ceiling, x_b[ev], y[ev])})
    return rows


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    """Mean and std over seeds of each (method, n_target)."""
    groups: dict[tuple, list[dict]] = {}
    for rows in per_seed:
        for r in rows:
            groups.setdefault((r["method"], r["n_target"]), []).append(r)
    out = []
    for (method, n), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs])
        bal = np.array([r["balanced_accuracy"] for r in rs])
        out.append({"method": method, "n_target": n if "ceiling" not in method else "all",
                    "accuracy": float(acc.mean()), "acc_std": float(acc.std()),
                    "balanced_accuracy": float(bal.mean()), "acc_min": float(acc.min()), "seeds": len(rs)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--features", default="ssl", choices=["ssl", "pca"])
    ap.add_argument("--n", type=int, default=None, help="simulated objects (default 5000; quick 2000)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)          # BLAS threads contend on the shared machine (6x slower logistic fits)
    n = args.n or (2000 if args.quick else 5000)
    seeds = args.seeds or (2 if args.quick else 5)
    adapters = {k: ADAPTERS[k] for k in (QUICK_ADAPTERS if args.quick else ADAPTERS)}
    cfg = HeadConfig(kind="mlp_ensemble", threads=1)
    t0 = time.perf_counter()
    x_a, x_b, y = features(args.features, n, args.quick)
    say(f"N={len(y)} task3 objects, D={x_a.shape[1]}, classes {np.bincount(y).tolist()} ({args.features})")
    per_seed = []
    for seed in range(seeds):
        rows = run_seed(x_a, x_b, y, seed, cfg, adapters, TARGET_LABELS)
        per_seed.append(rows)
        direct = next(r for r in rows if r["method"] == "direct")["accuracy"]
        best100 = max(r["accuracy"] for r in rows if r["method"].startswith("adapted") and r["n_target"] == 100)
        say(f"seed {seed}: direct {direct:.3f}, best adapted with 100 B labels {best100:.3f}")
    table = aggregate(per_seed)
    print_table(table, ["method", "n_target", "accuracy", "acc_std", "acc_min", "balanced_accuracy", "seeds"])
    passing = [r for r in table if r["method"].startswith("adapted") and r["n_target"] <= 100 and r["accuracy"] >= 0.95]
    fewest = min((r["n_target"] for r in passing), default=None)
    say(f"goal (>= 95% on B with <= 100 B labels): {'met with ' + str(fewest) + ' labels' if fewest else 'not met'}")
    name = args.name or ("transfer_quick" if args.quick else "transfer") + ("" if args.features == "ssl" else f"_{args.features}")
    path = write_result(name, {
        "quick": args.quick, "features": args.features, "n_objects": int(len(y)), "seeds": seeds,
        "eval_fraction": EVAL_FRACTION, "head_config": dataclasses.asdict(cfg),
        "adapters": {k: dataclasses.asdict(v) for k, v in adapters.items()}, "target_labels": TARGET_LABELS,
        "goal": ">= 95% accuracy on survey B with <= 100 target labels", "goal_met_with_labels": fewest,
        "table": table, "per_seed": per_seed, "seconds": time.perf_counter() - t0})
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
