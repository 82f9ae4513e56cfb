"""Metrics for labeling rounds: classification, calibration, regression and labeller agreement.

Conventions: `probs` are (N, K) class probabilities (rows sum to 1), `y` are (N,) integer
class ids in [0, K). Votes from several labellers are (N, R) integer class ids with -1 where
labeller r did not vote on galaxy n (Galaxy Zoo style: each galaxy is seen by a varying
subset of volunteers).

Calibration: expected calibration error (ECE, Guo et al. 2017) with EQUAL-WIDTH confidence
bins on [0, 1]: ECE = sum_b (n_b / N) * |acc_b - conf_b|, where conf_b is the mean top-class
probability and acc_b the accuracy of the predictions falling in bin b (bins are
(lo, hi], the first one [0, hi]). 0 = perfectly calibrated, in units of probability.

Agreement: statsmodels (which has fleiss_kappa) is NOT installed in this project, so Fleiss'
kappa is written here and checked against the worked example on Wikipedia in the tests.
Cohen's kappa for two labellers comes from sklearn.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score
from sklearn.metrics import confusion_matrix as _sk_confusion


# ---------------------------------------------------------------- classification
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of galaxies whose predicted class equals the label, in [0, 1]."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in y_true (rare mergers count as much
    as common ellipticals), in [0, 1]."""
    return float(balanced_accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 scores; classes never predicted nor present score 0."""
    labels = np.arange(n_classes) if n_classes else None
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    return _sk_confusion(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


# ---------------------------------------------------------------- calibration
def reliability_diagram(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin data for a reliability diagram, equal-width bins of top-class confidence.

    Returns edges (n_bins + 1,), and per bin (n_bins,): confidence (mean top-class
    probability), accuracy (fraction correct), count (galaxies). Empty bins hold NaN
    confidence/accuracy and count 0, so a plot can skip them.
    """
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    conf = probs.max(axis=1)                                     # (N,)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)     # (N,)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (lo, hi]; a confidence of exactly 0 falls in the first bin
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": mean_acc,
            "count": count.astype(np.int64)}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width bins (see module docstring), in [0, 1]."""
    rd = reliability_diagram(probs, y, n_bins)
    filled = rd["count"] > 0
    weights = rd["count"][filled] / rd["count"].sum()
    return float(np.sum(weights * np.abs(rd["accuracy"][filled] - rd["confidence"][filled])))


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    """Mean -log p(true class) in nats (lower is better; log K for a uniform guess)."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean(np.log(np.clip(p, eps, 1.0))))


def classification_summary(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """The numbers a labeling round reports, as plain floats (JSON-ready)."""
    pred = np.asarray(probs).argmax(axis=1)
    k = np.asarray(probs).shape[1]
    return {"accuracy": accuracy(y, pred), "balanced_accuracy": balanced_accuracy(y, pred),
            "macro_f1": macro_f1(y, pred, k), "ece": expected_calibration_error(probs, y, n_bins),
            "nll": negative_log_likelihood(probs, y), "n": int(len(y))}


# ---------------------------------------------------------------- regression
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root-mean-square error, in the units of the target (e.g. magnitudes, redshift)."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff ** 2)))


def interval_coverage(y_true: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                      level: float = 0.9) -> float:
    """Fraction of truths inside mean +- z * sigma, with z the two-sided Gaussian quantile of
    the nominal `level` (z = 1.645 for 0.9). A calibrated regressor returns ~level."""
    z = norm.ppf(0.5 + level / 2.0)
    inside = np.abs(np.asarray(y_true) - np.asarray(mean)) <= z * np.asarray(sigma)
    return float(np.mean(inside))


# ---------------------------------------------------------------- labeller agreement
def vote_counts(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, R) votes with -1 = no vote -> (N, K) int64 number of votes per class."""
    votes = np.asarray(votes)
    n, r = votes.shape
    valid = votes >= 0
    rows = np.repeat(np.arange(n), r).reshape(n, r)[valid]
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (rows, votes[valid]), 1)
    return counts


def vote_fractions(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, R) votes -> (N, K) float64 fraction of each galaxy's votes per class (Galaxy Zoo's
    raw, not debiased, vote fraction); rows with no votes are all NaN."""
    counts = vote_counts(votes, n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def vote_entropy(fractions: np.ndarray) -> np.ndarray:
    """(N, K) vote fractions -> (N,) Shannon entropy in nats: 0 = unanimous, log K = even split."""
    f = np.asarray(fractions, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(f > 0, f * np.log(f), 0.0)
    return -terms.sum(axis=1)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from (N, K) per-galaxy vote counts; 1 = perfect agreement, 0 = chance.

    Fleiss (1971) assumes the same number of raters n per subject. With unequal numbers
    (Galaxy Zoo), each subject's agreement is P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))
    and the category shares p_j are pooled over all votes; this reduces to Fleiss' formula
    when every n_i is equal. Subjects with fewer than 2 votes carry no agreement and are
    dropped.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return float("nan")
    p_i = (counts * (counts - 1)).sum(axis=1) / (n_i * (n_i - 1))   # (N,) observed agreement
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / n_i.sum()                             # (K,) category shares
    p_e = float(np.sum(p_j ** 2))                                    # chance agreement
    if p_e >= 1.0:  # every vote in one category: agreement is trivially perfect
        return 1.0
    return float((p_bar - p_e) / (1.0 - p_e))


def cohen_kappa(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Cohen's kappa between two labellers over the galaxies both labelled (sklearn)."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    both = (a >= 0) & (b >= 0)
    return float(cohen_kappa_score(a[both], b[both]))


# ---------------------------------------------------------------- uncertainty of a metric
# A round's validation set is often a handful of galaxies: 30 labels give an accuracy
# interval about +-0.15 wide. These intervals are what the pages show beside every metric.
def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n (e.g. accuracy = correct/n).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0/n and n/n,
    which is where tiny validation sets live. (nan, nan) when n == 0.
    """
    if n <= 0:
        return float("nan"), float("nan")
    z = norm.ppf(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_rows(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) row indices drawn with replacement: one bootstrap resample per row."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of (B,) resampled statistics, ignoring NaN resamples
    (e.g. a resample that drew only one class); (nan, nan) when none is finite."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def batched_confusion(y: np.ndarray, pred: np.ndarray, n_classes: int, rows: np.ndarray) -> np.ndarray:
    """(B, K, K) confusion matrices of B resamples rows (B, n) at once (one bincount)."""
    b, k = rows.shape[0], n_classes
    flat = (np.arange(b)[:, None] * k * k + np.asarray(y)[rows] * k + np.asarray(pred)[rows]).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k)


def balanced_accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """(..., K, K) -> (...) mean recall over the classes present (same as sklearn's)."""
    support = cm.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diagonal(cm, axis1=-2, axis2=-1) / support
    present = support > 0
    return np.where(present, recall, 0.0).sum(-1) / np.maximum(present.sum(-1), 1)


def macro_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """(..., K, K) -> (...) unweighted mean F1 over all K classes, 0 where undefined
    (sklearn's f1_score(labels=range(K), average="macro", zero_division=0))."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    denom = 2 * tp + (cm.sum(-1) - tp) + (cm.sum(-2) - tp)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0).mean(-1)


def batched_ece(probs: np.ndarray, y: np.ndarray, rows: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """(B,) ECE of B resamples rows (B, n), with the bins of expected_calibration_error."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    b = rows.shape[0]
    flat = (np.arange(b)[:, None] * n_bins + which[rows]).ravel()
    count = np.bincount(flat, minlength=b * n_bins).reshape(b, n_bins)
    gap = (np.bincount(flat, weights=conf[rows].ravel(), minlength=b * n_bins)
           - np.bincount(flat, weights=correct[rows].ravel(), minlength=b * n_bins)).reshape(b, n_bins)
    return np.abs(gap).sum(axis=1) / rows.shape[1]    # sum_b n_b/N |conf_b - acc_b| = sum_b |sum(conf - correct)|/N


def classification_intervals(probs: np.ndarray, y: np.ndarray, n_bins: int = 15, level: float = 0.95,
                             n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """{metric: [low, high]} for the metrics of classification_summary: Wilson for accuracy
    (a plain proportion), percentile bootstrap over galaxies for the others."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    n, k = probs.shape
    if n == 0:
        return {}
    pred = probs.argmax(axis=1)
    rows = bootstrap_rows(n, n_boot, seed)
    cm = batched_confusion(y, pred, k, rows)
    return {"accuracy": list(wilson_interval(int((pred == y).sum()), n, level)),
            "balanced_accuracy": list(percentile_interval(balanced_accuracy_from_confusion(cm), level)),
            "macro_f1": list(percentile_interval(macro_f1_from_confusion(cm), level)),
            "ece": list(percentile_interval(batched_ece(probs, y, rows, n_bins), level))}


def regression_intervals(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray, level: float = 0.95,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """{metric: [low, high]}: bootstrap for RMSE, Wilson for the interval coverages."""
    y, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mean, sigma))
    n = len(y)
    if n == 0:
        return {}
    sq = (y - mean) ** 2
    rows = bootstrap_rows(n, n_boot, seed)
    out = {"rmse": list(percentile_interval(np.sqrt(sq[rows].mean(axis=1)), level))}
    for name, nominal in (("coverage_90", 0.9), ("coverage_68", 0.6827)):
        inside = np.sqrt(sq) <= norm.ppf(0.5 + nominal / 2.0) * sigma
        out[name] = list(wilson_interval(int(inside.sum()), n, level))
    return out
