"""Quick check of the anomaly scores and of ranking with simulated feedback.

    python benchmarks/anomaly_scores.py           # N = 20,000, 3 seeds
    python benchmarks/anomaly_scores.py --quick   # N = 5,000, 1 seed

Synthetic embeddings (D = 64, compared by cosine like SSL embeddings): a Gaussian mixture of
ordinary galaxy types in a 16-d latent space, plus planted rarities:
  interesting  3 small tight groups between the ordinary types (mild outliers), score 5;
  artifacts    2 tight groups far from everything (extreme outliers), score 0 + artifact tag;
  oddballs     isolated noisy points (extreme, but boring), score 1; ordinary galaxies 0.
The raw scores therefore put artifacts and oddballs first; feedback should learn to skip
them. Toy data: the defaults of ml.anomaly were chosen on the realistic embeddings of
benchmarks/anomaly.py (simulated surveys and real SDSS), which reuses the same helpers.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from common import print_table, write_result  # noqa: F401  (sets sys.path)
from ml.anomaly import AnomalyConfig, combine_scores, score_all
from ml.ranking import FeedbackConfig, count_interesting, simulate_review_session

KIND_SCORE = {"ordinary": 0.0, "interesting": 5.0, "artifact": 0.0, "oddball": 1.0}


def planted_survey(n: int, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 embeddings and (n,) kind labels (see module docstring)."""
    rng = np.random.default_rng(seed)
    latent, k = 16, 12
    centres = rng.normal(size=(k, latent)) * 2.0                         # (K, L)
    n_int, n_art, n_odd = 3 * 25, 2 * 40, max(10, n // 500)
    n_ord = n - n_int - n_art - n_odd
    lab = rng.choice(k, n_ord, p=rng.dirichlet(np.full(k, 3.0)))
    parts = [centres[lab] + rng.normal(size=(n_ord, latent)) * 0.7]
    kinds = ["ordinary"] * n_ord
    for g in range(3):  # interesting: between two ordinary types, pushed off the line a bit
        a, b = rng.choice(k, 2, replace=False)
        c = (centres[a] + centres[b]) / 2 + rng.normal(size=latent) * 3.0
        parts.append(c + rng.normal(size=(25, latent)) * 1.0)
        kinds += ["interesting"] * 25
    for g in range(2):  # artifacts: far out, tight (a satellite trail looks like every other)
        c = rng.normal(size=latent)
        parts.append(c / np.linalg.norm(c) * 8.0 + rng.normal(size=(40, latent)) * 0.2)
        kinds += ["artifact"] * 40
    parts.append(rng.normal(size=(n_odd, latent)) * 4.0)                  # oddballs
    kinds += ["oddball"] * n_odd
    z = np.concatenate(parts)                                            # (n, L)
    x = z @ (rng.normal(size=(latent, d)) / np.sqrt(latent)) + 0.05 * rng.normal(size=(n, d))
    order = rng.permutation(n)
    return x[order].astype(np.float32), np.array(kinds)[order]


def counts(order, kinds, cutoffs) -> dict:
    found = count_interesting(order, kinds == "interesting", cutoffs)
    row = {f"int@{c}": found[c] for c in cutoffs}
    row["art@100"] = count_interesting(order, kinds == "artifact", (100,))[100]
    return row


def run_seed(n: int, seed: int, n_reviews: int, cutoffs) -> list[dict]:
    x, kinds = planted_survey(n, seed=seed)
    t0 = time.perf_counter()
    scores = score_all(x, AnomalyConfig(seed=seed))
    score_s = time.perf_counter() - t0
    scores["combined-mean"] = combine_scores({k: scores[k] for k in AnomalyConfig().methods}, "mean")
    scores["combined-max"] = combine_scores({k: scores[k] for k in AnomalyConfig().methods}, "max")
    rows = [{"seed": seed, "ranking": f"raw {name}", **counts(np.argsort(-s, kind="stable"), kinds, cutoffs)}
            for name, s in scores.items()]

    def oracle(i: int):
        return KIND_SCORE[kinds[i]], kinds[i] == "artifact"

    for base_name in ("iforest", "combined-mean", "combined-max"):
        rows += feedback_rows(x, kinds, scores[base_name], base_name, oracle, seed, n_reviews, cutoffs)
    rows[0]["seconds"] = round(score_s, 1)  # score_all time, on the first raw row
    return rows


def feedback_rows(x, kinds, base, base_name, oracle, seed, n_reviews, cutoffs) -> list[dict]:
    rows = []
    variants = {"default (knn, anomaly^0.5)": FeedbackConfig(seed=seed),
                "forest+boost": FeedbackConfig(seed=seed, regressor="forest", explore=1.0, anomaly_power=1.0),
                "forest+boost explore=0": FeedbackConfig(seed=seed, regressor="forest", explore=0.0,
                                                         anomaly_power=1.0),
                "forest+astronomaly": FeedbackConfig(seed=seed, regressor="forest", formula="astronomaly",
                                                     anomaly_power=1.0)}
    for name, cfg in variants.items():
        t0 = time.perf_counter()
        order = simulate_review_session(x, base, oracle, n_reviews, 10, cfg)
        rows.append({"seed": seed, "ranking": f"{base_name} + feedback {name}",
                     **counts(order, kinds, cutoffs), "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def mean_over_seeds(rows: list[dict], keys: list[str]) -> list[dict]:
    out = {}
    for r in rows:
        out.setdefault(r["ranking"], []).append(r)
    return [{"ranking": name, **{k: float(np.mean([r.get(k, np.nan) for r in rs])) for k in keys}}
            for name, rs in out.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--reviews", type=int, default=200)
    args = ap.parse_args()
    n = args.n or (5_000 if args.quick else 20_000)
    seeds = args.seeds or (1 if args.quick else 3)
    cutoffs = (50, 100, 200)
    rows = []
    for seed in range(seeds):
        rows += run_seed(n, seed, args.reviews, cutoffs)
    keys = [f"int@{c}" for c in cutoffs] + ["art@100"]
    table = mean_over_seeds(rows, keys)
    print(f"N={n}, interesting planted=75, artifacts=80; mean over {seeds} seed(s); "
          f"{args.reviews} reviews, re-rank every 10")
    print_table(table, ["ranking"] + keys)
    name = "anomaly_scores_quick" if args.quick else "anomaly_scores"  # quick runs keep the full result
    path = write_result(name, {"quick": args.quick,
        "n": n, "seeds": seeds, "reviews": args.reviews, "retrain_every": 10,
        "anomaly_config": dataclasses.asdict(AnomalyConfig()),
        "feedback_config": dataclasses.asdict(FeedbackConfig()),
        "planted": {"interesting": 75, "artifacts": 80, "oddballs": max(10, n // 500)},
        "oracle_scores": KIND_SCORE, "mean": table, "per_seed": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
