"""Active-learning query strategies: which galaxies should people label next, and why.

Every strategy returns (indices, reasons): row indices into X (int64, most informative
first, never an already-labelled row) and one short human-readable reason per pick, shown
next to the cutout in the labeling page ("entropy 1.02 (top 0.5%)").

  random            uniform over unlabelled galaxies (the baseline).
  least_confidence  1 - max_k p_k.
  margin            smallest gap between the two most probable classes (score 1 - gap).
  entropy           -sum_k p_k log p_k (nats).
  bald              mutual information between the label and the model (Houlsby et al. 2011;
                    Walmsley et al. 2020): H[mean_m p_m] - mean_m H[p_m], from member_probs
                    (M, N, K). High when members DISAGREE, not when all agree on "unsure".
  diverse           cluster-margin style (Citovsky et al. 2021): k-means (k = batch) on the
                    pool_factor * batch most uncertain galaxies, then the most uncertain of each
                    cluster, so one batch doesn't spend 50 labels on one clump of look-alikes.
  coreset           greedy k-center (Sener & Savarese 2018): repeatedly the galaxy farthest from
                    every labelled or already-picked galaxy; uses no model at all.
  cold_start        the galaxies nearest to k-means centroids (k = batch): a diverse seed set
                    before any model is worth trusting (`query(..., cold_start_below=...)`).

Distances are Euclidean on X as given: pass L2-normalised embeddings for cosine geometry.
`simulate_active_learning` replays labeling rounds with an oracle (benchmarks reuse it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import xlogy
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from ml.heads import HeadConfig, fit_classifier
from ml.metrics import accuracy, balanced_accuracy
from ml.progress import Progress

Picks = tuple[np.ndarray, list[str]]

KMEANS_FIT_MAX = 20_000   # rows k-means is fitted on (cold start); centroids barely move beyond this
CORESET_MAX = 20_000      # candidate rows greedy k-center scans; sub-sampled above this
QUERY_THREADS = 1         # BLAS/OpenMP threads while picking: on a busy worker, 2 threads that wait
                          #   for each other made k-means 7x slower than 1 (measured, 20k x 128)


# ------------------------------------------------------------------ uncertainty scores
def entropy(probs: np.ndarray) -> np.ndarray:
    """(..., K) -> (...) Shannon entropy in nats (0 log 0 = 0)."""
    return -xlogy(probs, probs).sum(axis=-1)


def uncertainty(name: str, probs: np.ndarray) -> np.ndarray:
    """(N,) score, HIGHER = more informative. probs (N, K), or members (M, N, K) which are
    averaged for every score except bald (which needs them). A 1-D probs (N,) is already a
    per-row uncertainty (a regression head's predictive sigma) and is used as it is by
    every uncertainty strategy."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        if name not in ("least_confidence", "margin", "entropy", "bald", "sigma"):
            raise ValueError(f"unknown uncertainty {name!r}")
        return probs
    if name == "bald":
        if probs.ndim != 3:
            raise ValueError("bald needs member probabilities (M, N, K) from Head.member_probs")
        return entropy(probs.mean(axis=0)) - entropy(probs).mean(axis=0)
    mean = probs.mean(axis=0) if probs.ndim == 3 else probs                  # (N, K)
    if name == "least_confidence":
        return 1.0 - mean.max(axis=1)
    if name == "margin":
        top2 = np.sort(mean, axis=1)[:, -2:] if mean.shape[1] > 1 else np.hstack([0 * mean, mean])
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if name == "entropy":
        return entropy(mean)
    raise ValueError(f"unknown uncertainty {name!r}")


def _describe(name: str, score: float, rank: int, n_candidates: int) -> str:
    """'entropy 1.02 (top 0.5%)'; margin is shown as the gap itself (small = uncertain)."""
    value = 1.0 - score if name == "margin" else score
    label = {"least_confidence": "least confidence", "bald": "BALD",
             "sigma": "predictive sigma"}.get(name, name)
    return f"{label} {value:.3g} (top {100.0 * (rank + 1) / n_candidates:.2g}%)"


def _top_uncertain(name: str, probs, candidates, batch_size) -> Picks:
    if np.ndim(probs) == 1:
        name = "sigma"            # regression: the predictive sigma itself
    scores = uncertainty(name, probs)[candidates]
    order = np.argsort(-scores, kind="stable")[:batch_size]
    reasons = [_describe(name, scores[i], r, len(candidates)) for r, i in enumerate(order)]
    return candidates[order], reasons


def _uncertainty_strategy(name: str):
    def select(x, probs, candidates, batch_size, rng) -> Picks:
        return _top_uncertain(name, probs, candidates, batch_size)
    select.__name__ = name
    return select


# ------------------------------------------------------------------ diversity
def select_random(x, probs, candidates, batch_size, rng) -> Picks:
    picks = rng.choice(candidates, size=min(batch_size, len(candidates)), replace=False)
    return picks, ["random pick (baseline)"] * len(picks)


def select_diverse(x, probs, candidates, batch_size, rng, pool_factor: int = 10,
                   score: str | None = None) -> Picks:
    """Most uncertain galaxy of each k-means cluster of the top-uncertain pool."""
    score = score or {3: "bald", 1: "sigma"}.get(np.ndim(probs), "entropy")
    scores = uncertainty(score, probs)[candidates]
    order = np.argsort(-scores, kind="stable")
    pool = order[:pool_factor * batch_size]                      # positions in candidates
    if len(pool) <= batch_size:
        return _top_uncertain(score, probs, candidates, batch_size)
    km = KMeans(batch_size, n_init=1, random_state=int(rng.integers(2**31))).fit(x[candidates[pool]])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    picks, reasons = [], []
    for c in range(batch_size):
        members = pool[km.labels_ == c]
        if len(members) == 0:
            continue
        best = members[np.argmax(scores[members])]
        picks.append(best)
        reasons.append(f"{_describe(score, scores[best], rank[best], len(candidates))}, "
                       f"most uncertain of cluster {c} ({len(members)} look-alikes)")
    by_score = np.argsort(-scores[picks], kind="stable")        # most informative first
    return candidates[np.asarray(picks)[by_score]], [reasons[i] for i in by_score]


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, D), (m, D) -> (n, m) squared Euclidean distances, float64, >= 0."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def select_coreset(x, probs, candidates, batch_size, rng, labelled=None) -> Picks:
    """Greedy k-center over candidates; labelled rows are the initial centres."""
    if len(candidates) > CORESET_MAX:
        candidates = rng.choice(candidates, CORESET_MAX, replace=False)
    xc = x[candidates].astype(np.float64)                       # (n, D), converted once
    norms = (xc ** 2).sum(axis=1)                                # (n,) |x|^2, reused for every centre
    min_d = np.full(len(candidates), np.inf)
    if labelled is not None and len(labelled):
        for start in range(0, len(labelled), 2048):              # chunks bound (n, 2048) memory
            min_d = np.minimum(min_d, _sq_dist(xc, x[labelled[start:start + 2048]]).min(axis=1))
    picks, reasons = [], []
    for _ in range(min(batch_size, len(candidates))):
        i = int(rng.integers(len(candidates))) if np.isinf(min_d).all() else int(np.argmax(min_d))
        what = "first core-set centre" if np.isinf(min_d[i]) else \
            f"core-set: distance {np.sqrt(min_d[i]):.3g} to nearest labelled/picked galaxy"
        picks.append(i)
        reasons.append(what)
        d_new = np.maximum(norms + norms[i] - 2.0 * (xc @ xc[i]), 0.0)    # (n,) to the new centre
        min_d = np.minimum(min_d, d_new)
    return candidates[np.asarray(picks, dtype=np.int64)], reasons


def select_cold_start(x, probs, candidates, batch_size, rng) -> Picks:
    """Nearest unlabelled galaxy to each of batch_size k-means centroids of all rows."""
    fit_rows = rng.choice(len(x), min(len(x), KMEANS_FIT_MAX), replace=False)
    k = min(batch_size, len(candidates), len(fit_rows))
    km = KMeans(k, n_init=1, random_state=int(rng.integers(2**31))).fit(x[fit_rows])
    share = np.bincount(km.labels_, minlength=k) / len(fit_rows)
    dist = _sq_dist(x[candidates], km.cluster_centers_)           # (n, k), one pass over the rows
    taken = np.zeros(len(candidates), dtype=bool)
    picks, reasons = [], []
    for c in np.argsort(-share):                                  # big clusters first
        d = dist[:, c].copy()
        d[taken] = np.inf
        j = int(np.argmin(d))
        taken[j] = True
        picks.append(candidates[j])
        reasons.append(f"diverse seed: nearest to centroid of cluster {c} (~{100 * share[c]:.2g}% of galaxies)")
    return np.asarray(picks, dtype=np.int64), reasons


STRATEGIES: dict[str, Callable[..., Picks]] = {
    "random": select_random,
    "least_confidence": _uncertainty_strategy("least_confidence"),
    "margin": _uncertainty_strategy("margin"),
    "entropy": _uncertainty_strategy("entropy"),
    "bald": _uncertainty_strategy("bald"),
    "diverse": select_diverse,
    "coreset": select_coreset,
    "cold_start": select_cold_start,
}
MODEL_FREE = frozenset({"random", "coreset", "cold_start"})   # need no probabilities


def needs_member_probs(strategy: str) -> bool:
    """True when `query` wants Head.member_probs (M, N, K) rather than predict_proba (N, K)."""
    return strategy == "bald"


def query(strategy: str, x: np.ndarray, probs: np.ndarray | None, labelled_idx, batch_size: int,
          seed: int = 0, cold_start_below: int = 0) -> Picks:
    """Pick up to batch_size unlabelled rows of x (N, D) to label next.

    probs: predict_proba (N, K) or member_probs (M, N, K) for ALL N rows (None for model-free
    strategies). labelled_idx: rows already labelled (never returned). cold_start_below: while
    fewer labels than this exist (e.g. a few per class), use cold_start whatever `strategy` says.
    """
    n = len(x)
    labelled = np.unique(np.asarray(labelled_idx, dtype=np.int64))
    mask = np.ones(n, dtype=bool)
    mask[labelled] = False
    candidates = np.flatnonzero(mask)
    if len(candidates) == 0 or batch_size <= 0:
        return np.empty(0, dtype=np.int64), []
    if len(labelled) < cold_start_below:
        strategy = "cold_start"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    if strategy not in MODEL_FREE and probs is None:
        raise ValueError(f"strategy {strategy!r} needs model probabilities")
    rng = np.random.default_rng(seed)
    fn = STRATEGIES[strategy]
    with threadpool_limits(limits=QUERY_THREADS):
        if strategy == "coreset":
            idx, reasons = fn(x, probs, candidates, batch_size, rng, labelled=labelled)
        else:
            idx, reasons = fn(x, probs, candidates, batch_size, rng)
    return np.asarray(idx, dtype=np.int64), list(reasons)


# ------------------------------------------------------------------ simulation with an oracle
def simulate_active_learning(x: np.ndarray, y: np.ndarray, strategy: str, seed: int, initial: int,
                             batch: int, budget: int, head_cfg: HeadConfig | None,
                             eval_idx: np.ndarray, n_classes: int | None = None,
                             initial_strategy: str = "random", cold_start_below: int = 0,
                             progress: Progress | None = None) -> list[tuple[int, float, float]]:
    """Replay labeling rounds: the known labels y play the people. Returns the learning curve
    [(n_labels, accuracy, balanced_accuracy)] measured on eval_idx (never queried) after each
    retrain, from `initial` labels up to `budget` in steps of `batch`."""
    n_classes = n_classes or int(y.max()) + 1
    head_cfg = head_cfg or HeadConfig()
    pool = np.setdiff1d(np.arange(len(x)), eval_idx)
    xp, yp = x[pool], y[pool]
    lab, _ = query(initial_strategy, xp, None, [], initial, seed)
    curve: list[tuple[int, float, float]] = []
    for rnd in range(10_000):
        head = fit_classifier(xp[lab], yp[lab], n_classes, head_cfg, x_all=xp)
        pred = head.predict_proba(x[eval_idx]).argmax(axis=1)
        curve.append((int(len(lab)), accuracy(y[eval_idx], pred), balanced_accuracy(y[eval_idx], pred)))
        if progress:
            progress(len(lab), budget, f"{strategy}: {len(lab)} labels, accuracy {curve[-1][1]:.3f}")
        if len(lab) >= budget:
            break
        probs = None if strategy in MODEL_FREE else (
            head.member_probs(xp) if needs_member_probs(strategy) else head.predict_proba(xp))
        new, _ = query(strategy, xp, probs, lab, min(batch, budget - len(lab)), seed * 1000 + rnd + 1,
                       cold_start_below)
        if len(new) == 0:
            break
        lab = np.concatenate([lab, new])
    return curve


def labels_to_reach(curve: list[tuple[int, float, float]], target_acc: float,
                    sustained: bool = False) -> int | None:
    """Fewest labels at which the curve's accuracy first reaches target_acc (None = never).
    sustained=True: the fewest labels FROM WHICH it stays at or above the target for the rest
    of the curve (a noisy curve that touches the target once and drops again does not count).
    Resolution is one round (batch) of labels."""
    if sustained:
        needed = None
        for n_labels, acc, _ in reversed(curve):
            if acc < target_acc:
                break
            needed = int(n_labels)
        return needed
    for n_labels, acc, _ in curve:
        if acc >= target_acc:
            return int(n_labels)
    return None


def labels_saved(curve: list[tuple[int, float, float]], baseline: list[tuple[int, float, float]],
                 at_labels: int = 500, sustained: bool = False) -> dict[str, float | None]:
    """How many fewer labels `curve` needs than the baseline (random) to reach the baseline's
    accuracy at `at_labels` labels. fraction_saved 0.5 = half the labels (the project goal)."""
    base = [acc for n, acc, _ in baseline if n <= at_labels]
    target = base[-1] if base else float("nan")
    needed = labels_to_reach(curve, target, sustained)
    return {"target_accuracy": target, "baseline_labels": at_labels, "labels_needed": needed,
            "fraction_saved": None if needed is None else 1.0 - needed / at_labels}
