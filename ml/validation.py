"""Validating a task head on a small label set: which rows to hold out, out-of-fold predictions,
and metrics whose calibration is judged on rows the calibration never saw.

Split (ValidationConfig): with fewer than `cv_below` labels a fixed hold-out would be a
handful of galaxies, so metrics come from stratified K-fold cross-validation over ALL labels
(`oof_logits`, `oof_regression`: no head saw the rows it is scored on). From `cv_below`
labels on, a stable 20% of labelled galaxies (`is_holdout`: a hash of the galaxy id, so it
does not move between rounds) is held out.

Calibration: the temperature (or regression sigma scale) a model serves is fitted on all
evaluation rows, but the ECE/coverage reported is cross-fitted (ml.calibration.cross_fit_*):
each evaluation fold is calibrated by a fit on the other folds. The metric dicts carry
"ece_before_calibration", a "calibration" block, and an interval per metric (Wilson for
proportions, bootstrap for the rest) with the number of galaxies behind it; they are
JSON-ready (NaN and inf become None).

The heads are fitted by the caller (`fit(x, y)` callables), so this module needs no head type.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.calibration import (calibrated_log_probs, cross_fit_sigma_scale, cross_fit_temperature,
                            fit_sigma_scale, fit_temperature)
from ml.folds import kfold, stratified_kfold
from ml.metrics import (classification_intervals, classification_summary, confusion_matrix,
                        expected_calibration_error, interval_coverage, regression_intervals,
                        reliability_diagram, rmse)

HOLDOUT_MODULUS = 5       # 1 in 5 labelled galaxies is held out
ECE_BINS = 10             # reliability bins: 10 keeps a few galaxies per bin at ~100 labels


@dataclass
class ValidationConfig:
    cv_below: int = 200          # fewer labels: K-fold CV over all labels. A 20% hold-out of 200 is
                                 #   40 galaxies (accuracy interval ~ +-0.15); below that it is noise
    cv_folds: int = 5            # folds of that cross-validation (5: 80% of labels train each fold)
    calibration_folds: int = 5   # cross-fit folds of the temperature / sigma scale over evaluation rows
    interval_level: float = 0.95  # two-sided level of the interval shown beside every metric
    n_bootstrap: int = 1000      # bootstrap resamples (vectorised: ~50 ms at 1,000 rows)
    seed: int = 0                # folds and bootstrap draws (fixed: a re-run reproduces the round)


VALIDATION = ValidationConfig()


# ------------------------------------------------------------------ which rows are held out
def is_holdout(galaxy_ids: np.ndarray) -> np.ndarray:
    """(N,) bool: the stable validation galaxies (Knuth multiplicative hash of the id)."""
    h = (np.asarray(galaxy_ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
    return (h >> np.uint64(7)) % np.uint64(HOLDOUT_MODULUS) == 0


def uses_holdout(galaxy_ids: np.ndarray, vcfg: ValidationConfig) -> np.ndarray | None:
    """The hold-out mask when there are enough labels for one (>= 2 rows each side), else None."""
    if len(galaxy_ids) < vcfg.cv_below:
        return None
    val = is_holdout(galaxy_ids)
    return val if val.sum() >= 2 and (~val).sum() >= 2 else None


# ------------------------------------------------------------------ out-of-fold predictions
def oof_logits(x: np.ndarray, y: np.ndarray, n_classes: int, fit: Callable, split: list[np.ndarray]
               ) -> np.ndarray | None:
    """Out-of-fold member logits (M, N, K): for each fold of `split`, fit(x, y) on the other rows
    returns a head whose member_logits scores the fold. None when no fold had training rows."""
    out = None
    for f in split:
        train = np.setdiff1d(np.arange(len(y)), f)
        if len(train) == 0:
            continue
        logits = fit(x[train], y[train]).member_logits(x[f])                 # (M, |f|, K)
        if out is None:
            out = np.zeros((logits.shape[0], len(y), n_classes), dtype=np.float32)
        out[:, f] = logits
    return out


def oof_regression(x: np.ndarray, y: np.ndarray, fit: Callable, split: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (mean, sigma), both (N,): fit(x, y) on the other rows returns a regressor
    whose predict scores the fold; a fold with fewer than 2 other rows gets their mean, sigma 1."""
    mean, sigma = np.zeros(len(y)), np.ones(len(y))
    for f in split:
        train = np.setdiff1d(np.arange(len(y)), f)
        if len(train) >= 2:
            m, s = fit(x[train], y[train]).predict(x[f])
            mean[f], sigma[f] = m, s
        else:
            mean[f], sigma[f] = y[train].mean() if len(train) else 0.0, 1.0
    return mean, sigma


def calibrated_probs(logits: np.ndarray, t: float) -> np.ndarray:
    """Calibrated ensemble-mean probabilities (N, K) from member logits (M, N, K)."""
    return np.exp(calibrated_log_probs(logits, t))


# ------------------------------------------------------------------ classification metrics
def classification_metrics(probs: np.ndarray, y: np.ndarray, n_classes: int,
                           vcfg: ValidationConfig = VALIDATION) -> dict:
    """Accuracy, balanced accuracy, macro-F1, ECE (+ intervals, confusion, reliability) as JSON-ready."""
    probs = np.asarray(probs, dtype=np.float64)
    summary = classification_summary(probs, y, n_bins=ECE_BINS)
    summary["intervals"] = classification_intervals(probs, y, ECE_BINS, vcfg.interval_level,
                                                    vcfg.n_bootstrap, vcfg.seed)
    summary["interval_level"] = vcfg.interval_level
    rd = reliability_diagram(probs, y, n_bins=ECE_BINS)
    summary["confusion"] = confusion_matrix(y, probs.argmax(1), n_classes).tolist()
    summary["reliability"] = {k: [None if not np.isfinite(v) else float(v) for v in rd[k]]
                              for k in ("confidence", "accuracy")}
    summary["reliability"]["count"] = rd["count"].tolist()
    return _finite(summary)


def _finite(obj):
    """NaN/inf floats (also inside intervals) -> None, so the JSON column and pages stay clean."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not np.isfinite(obj) else obj


def calibrated_classification_metrics(logits: np.ndarray, y: np.ndarray, n_classes: int,
                                      vcfg: ValidationConfig = VALIDATION) -> tuple[float, dict]:
    """(temperature to serve, metrics) from evaluation logits (M, N, K) no head was fitted on.

    The served temperature is fitted on all N rows; the metrics use the cross-fitted
    probabilities (each calibration fold scored by a temperature fitted on the others), and
    "ece_before_calibration" the raw ones (T = 1) on the same rows.
    """
    y = np.asarray(y)
    if len(y) < 4:   # too few rows to fit anything on, let alone hold some back
        metrics = classification_metrics(calibrated_probs(logits, 1.0), y, n_classes, vcfg)
        metrics["ece_before_calibration"] = metrics["ece"]
        metrics["calibration"] = {"temperature": 1.0, "method": "none (fewer than 4 evaluation rows)"}
        return 1.0, metrics
    split = stratified_kfold(y, vcfg.calibration_folds, vcfg.seed + 1)
    crossed = cross_fit_temperature(logits, y, split)
    metrics = classification_metrics(crossed.calibrated, y, n_classes, vcfg)
    before = expected_calibration_error(calibrated_probs(logits, 1.0), y, ECE_BINS)
    metrics["ece_before_calibration"] = before
    temperature = fit_temperature(logits, y)
    metrics["calibration"] = _finite({
        "temperature": temperature, "fold_temperatures": crossed.params,
        "ece_before": before, "ece_after": metrics["ece"], "n": int(len(y)),
        "method": f"temperature fitted on {len(split) - 1} of {len(split)} folds of the evaluation rows, "
                  "scored on the remaining fold (cross-fit): neither head nor temperature saw the scored rows"})
    return temperature, metrics


# ------------------------------------------------------------------ regression metrics
def regression_metrics(y, mean, sigma, vcfg: ValidationConfig = VALIDATION) -> dict:
    return _finite({"rmse": rmse(y, mean), "coverage_90": interval_coverage(y, mean, sigma, 0.9),
                    "coverage_68": interval_coverage(y, mean, sigma, 0.6827),
                    "mean_sigma": float(np.mean(sigma)), "n": int(len(y)),
                    "intervals": regression_intervals(y, mean, sigma, vcfg.interval_level,
                                                      vcfg.n_bootstrap, vcfg.seed),
                    "interval_level": vcfg.interval_level})


def calibrated_regression_metrics(y, mean, sigma, vcfg: ValidationConfig = VALIDATION) -> tuple[float, dict]:
    """(sigma scale to serve, metrics) from evaluation predictions no head was fitted on; the
    coverage reported uses the cross-fitted scale (see calibrated_classification_metrics)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 4:
        metrics = regression_metrics(y, mean, sigma, vcfg)
        metrics["calibration"] = {"sigma_scale": 1.0, "method": "none (fewer than 4 evaluation rows)"}
        return 1.0, metrics
    crossed = cross_fit_sigma_scale(y, mean, sigma, kfold(len(y), vcfg.calibration_folds, vcfg.seed + 1))
    metrics = regression_metrics(y, mean, crossed.calibrated, vcfg)
    scale = fit_sigma_scale(y, mean, sigma)
    metrics["calibration"] = _finite({
        "sigma_scale": scale, "fold_scales": crossed.params, "n": int(len(y)),
        "coverage_90_before": interval_coverage(y, mean, sigma, 0.9), "coverage_90_after": metrics["coverage_90"],
        "method": f"sigma scale fitted on {len(crossed.params) - 1} of {len(crossed.params)} folds of the "
                  "evaluation rows, scored on the remaining fold (cross-fit)"})
    return scale, metrics
