"""Fit a task's head on labelled embeddings, validate it, carry it across surveys, predict.

Pure numpy/ml code (no Django), so it is easy to test and the round job stays thin.

Validation (ValidationConfig): with fewer than `cv_below` labels a fixed hold-out would be a
handful of galaxies, so metrics come from stratified K-fold cross-validation over ALL
labels (out-of-fold predictions: no head saw the rows it is scored on). From `cv_below`
labels on, a stable 20% of labelled galaxies (by a hash of the galaxy id, so it does not
move between rounds) is held out and the head learns from the rest.  Either way the
served model is the head fitted on the training labels, as before.

Calibration is judged on rows it was not fitted on: the temperature (or regression sigma
scale) the model serves is fitted on all evaluation rows (out-of-fold or hold-out), but the
ECE/coverage reported is cross-fitted (ml.calibration.cross_fit_*): each evaluation fold is
calibrated by a fit on the other folds.  Metrics carry "ece_before_calibration", a
"calibration" block, and a 95% interval per metric (Wilson for proportions, bootstrap for
the rest) with the number of galaxies behind it.

Across surveys (Dominguez Sanchez et al. 2019): the base head learns from survey A's
labels; each other survey with labels gets ``ml.adapt.adapt_head`` (per-survey
alignment + head retraining with A's rows mixed in).  "before" is the base head on B's
labelled galaxies (it never saw them); "after" is the adapted head, cross-validated on
B's labels.  Surveys without labels are predicted by the base head directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np

from ml.active import entropy
from ml.adapt import AdaptConfig, adapt_head
from ml.calibration import (calibrated_log_probs, cross_fit_sigma_scale, cross_fit_temperature,
                            fit_sigma_scale, fit_temperature)
from ml.folds import kfold, stratified_kfold
from ml.heads import Head, HeadConfig, fit_classifier, fit_regressor
from ml.metrics import (classification_intervals, classification_summary, confusion_matrix,
                        expected_calibration_error, interval_coverage, regression_intervals,
                        reliability_diagram, rmse)

HOLDOUT_MODULUS = 5       # 1 in 5 labelled galaxies is held out
CV_FOLDS = 5              # folds of the transfer ("after") cross-validation
ADAPT_MIN = 4             # target labels needed before a head is adapted to survey B
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

Progress = Callable[[float, float, str], None]


def head_config(overrides: dict | None) -> HeadConfig:
    """HeadConfig from a task's head_config dict (unknown keys are an error, said clearly)."""
    overrides = dict(overrides or {})
    known = {f.name for f in fields(HeadConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown head_config keys {unknown}; known: {sorted(known)}")
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    # One torch thread unless the task says otherwise: these heads are too small to gain from
    # more, and several threads on a busy worker stall each other (measured: 40x slower).
    overrides.setdefault("threads", 1)
    return replace(HeadConfig(), **overrides)


def is_holdout(galaxy_ids: np.ndarray) -> np.ndarray:
    """(N,) bool: the stable validation galaxies (Knuth multiplicative hash of the id)."""
    h = (np.asarray(galaxy_ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
    return (h >> np.uint64(7)) % np.uint64(HOLDOUT_MODULUS) == 0


def folds(n: int, k: int = CV_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """k (or n, if fewer) disjoint index arrays covering range(n)."""
    return kfold(n, k, seed)


def uses_holdout(galaxy_ids: np.ndarray, vcfg: ValidationConfig) -> np.ndarray | None:
    """The hold-out mask when there are enough labels for one (>= 2 rows each side), else None."""
    if len(galaxy_ids) < vcfg.cv_below:
        return None
    val = is_holdout(galaxy_ids)
    return val if val.sum() >= 2 and (~val).sum() >= 2 else None


def validation_text(vcfg: ValidationConfig, n: int, holdout: bool) -> str:
    """What the metrics were measured on, as the pages print it."""
    if holdout:
        return f"hold-out {100 // HOLDOUT_MODULUS}% of labelled galaxies (n = {n})"
    return f"{min(vcfg.cv_folds, n)}-fold CV over {n} labels (fewer than {vcfg.cv_below})"


@dataclass
class Fitted:
    """What a round produces: heads, predictions for every task galaxy and metrics."""
    heads: dict[str, object]                 # "base" and one per adapted survey key
    predictions: dict[str, np.ndarray]       # probs/members/uncertainty or mean/sigma, (N, ...)
    metrics: dict
    transfer: dict = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0


# ------------------------------------------------------------------ classification
def _fit_cls(x, y, k, cfg, x_val=None, y_val=None, x_all=None):
    return fit_classifier(x, y, k, cfg, x_val=x_val, y_val=y_val, x_all=x_all)


def _oof_logits(x, y, k, cfg, x_all, fit=None, split: list[np.ndarray] | None = None) -> np.ndarray:
    """Out-of-fold member logits (M, N, K) by K-fold cross-validation (split: the folds)."""
    fit = fit or (lambda xt, yt: _fit_cls(xt, yt, k, cfg, x_all=x_all))
    out = None
    for f in split if split is not None else folds(len(y)):
        train = np.setdiff1d(np.arange(len(y)), f)
        if len(train) == 0:
            continue
        logits = fit(x[train], y[train]).member_logits(x[f])                 # (M, |f|, K)
        if out is None:
            out = np.zeros((logits.shape[0], len(y), k), dtype=np.float32)
        out[:, f] = logits
    return out


def _probs(logits: np.ndarray, t: float) -> np.ndarray:
    """Calibrated ensemble-mean probabilities (N, K) from member logits (M, N, K)."""
    return np.exp(calibrated_log_probs(logits, t))


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
        metrics = classification_metrics(_probs(logits, 1.0), y, n_classes, vcfg)
        metrics["ece_before_calibration"] = metrics["ece"]
        metrics["calibration"] = {"temperature": 1.0, "method": "none (fewer than 4 evaluation rows)"}
        return 1.0, metrics
    split = stratified_kfold(y, vcfg.calibration_folds, vcfg.seed + 1)
    crossed = cross_fit_temperature(logits, y, split)
    metrics = classification_metrics(crossed.calibrated, y, n_classes, vcfg)
    before = expected_calibration_error(_probs(logits, 1.0), y, ECE_BINS)
    metrics["ece_before_calibration"] = before
    temperature = fit_temperature(logits, y)
    metrics["calibration"] = _finite({
        "temperature": temperature, "fold_temperatures": crossed.params,
        "ece_before": before, "ece_after": metrics["ece"], "n": int(len(y)),
        "method": f"temperature fitted on {len(split) - 1} of {len(split)} folds of the evaluation rows, "
                  "scored on the remaining fold (cross-fit): neither head nor temperature saw the scored rows"})
    return temperature, metrics


def fit_classification(x_all: np.ndarray, lab_pos: np.ndarray, y: np.ndarray, galaxy_ids: np.ndarray,
                       n_classes: int, cfg: HeadConfig, progress: Progress | None = None,
                       vcfg: ValidationConfig = VALIDATION) -> tuple:
    """Base classifier on labelled rows lab_pos of x_all; returns (head, val metrics, n_train, n_val)."""
    x = x_all[lab_pos]
    val = uses_holdout(galaxy_ids[lab_pos], vcfg)
    if val is not None:
        head = _fit_cls(x[~val], y[~val], n_classes, cfg, x_all=x_all)
        head.temperature, metrics = calibrated_classification_metrics(
            head.member_logits(x[val]), y[val], n_classes, vcfg)
        metrics["validation"] = validation_text(vcfg, int(val.sum()), holdout=True)
        metrics["evaluation"] = "holdout"
        return head, metrics, int((~val).sum()), int(val.sum())
    oof = _oof_logits(x, y, n_classes, cfg, x_all, split=stratified_kfold(y, vcfg.cv_folds, vcfg.seed))
    head = _fit_cls(x, y, n_classes, cfg, x_all=x_all)
    metrics = {}
    if oof is not None:
        head.temperature, metrics = calibrated_classification_metrics(oof, y, n_classes, vcfg)
    metrics["validation"] = validation_text(vcfg, int(len(y)), holdout=False)
    metrics["evaluation"] = "cv"
    return head, metrics, int(len(y)), int(len(y))


def adapt_classification(base: Head, x_all, src_pos, y_src, tgt_pos, y_tgt, tgt_all_pos,
                         n_classes: int, acfg: AdaptConfig) -> tuple[Head, dict]:
    """Adapted head for one target survey + {"before", "after"} metrics on its labels."""
    x_src, x_tgt, x_tgt_all = x_all[src_pos], x_all[tgt_pos], x_all[tgt_all_pos]
    before = classification_metrics(base.predict_proba(x_tgt), y_tgt, n_classes)

    def adapt(xt, yt):
        return adapt_head(base, xt, yt, acfg, x_source=x_src, y_source=y_src, x_target_all=x_tgt_all)

    oof = _oof_logits(x_tgt, y_tgt, n_classes, base.cfg, None, fit=adapt)
    after = classification_metrics(_probs(oof, base.temperature), y_tgt, n_classes)
    head = adapt(x_tgt, y_tgt)
    slim = lambda m: {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "n", "intervals")}  # noqa: E731
    return head, {"before": slim(before), "after": slim(after), "n_target_labels": int(len(y_tgt)),
                  "after_validation": f"{min(CV_FOLDS, len(y_tgt))}-fold cross-validation on target labels"}


def predict_classification(head: Head, x: np.ndarray) -> dict[str, np.ndarray]:
    members = head.member_probs(x)                                  # (M, N, K)
    probs = head.predict_proba(x)                                   # (N, K)
    out = {"probs": probs.astype(np.float32), "uncertainty": entropy(probs).astype(np.float32)}
    if members.shape[0] > 1:
        out["members"] = members.astype(np.float16)                 # BALD needs them; half the bytes
    return out


# ------------------------------------------------------------------ regression
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


def fit_regression(x_all, lab_pos, y, galaxy_ids, cfg: HeadConfig, vcfg: ValidationConfig = VALIDATION) -> tuple:
    x = x_all[lab_pos]
    val = uses_holdout(galaxy_ids[lab_pos], vcfg)
    if val is not None:
        head = fit_regressor(x[~val], y[~val], cfg, x_all=x_all)
        mean, sigma = head.predict(x[val])
        head.sigma_scale, metrics = calibrated_regression_metrics(y[val], mean, sigma, vcfg)
        metrics["validation"] = validation_text(vcfg, int(val.sum()), holdout=True)
        metrics["evaluation"] = "holdout"
        return head, metrics, int((~val).sum()), int(val.sum())
    mean, sigma = np.zeros(len(y)), np.ones(len(y))
    for f in kfold(len(y), vcfg.cv_folds, vcfg.seed):
        train = np.setdiff1d(np.arange(len(y)), f)
        if len(train) >= 2:
            m, s = fit_regressor(x[train], y[train], cfg, x_all=x_all).predict(x[f])
            mean[f], sigma[f] = m, s
        else:
            mean[f], sigma[f] = y[train].mean() if len(train) else 0.0, 1.0
    head = fit_regressor(x, y, cfg, x_all=x_all)
    head.sigma_scale, metrics = calibrated_regression_metrics(y, mean, sigma, vcfg)
    metrics["validation"] = validation_text(vcfg, int(len(y)), holdout=False)
    metrics["evaluation"] = "cv"
    return head, metrics, int(len(y)), int(len(y))


def predict_regression(head, x) -> dict[str, np.ndarray]:
    mean, sigma = head.predict(x)
    return {"mean": mean.astype(np.float32), "sigma": sigma.astype(np.float32),
            "uncertainty": sigma.astype(np.float32)}
