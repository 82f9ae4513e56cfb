"""Fit a task's head on labelled embeddings, validate it, carry it across surveys, predict.

Pure numpy/ml code (no Django), so it is easy to test and the round job stays thin.

Validation: with at least HOLDOUT_MIN labels, a stable 20% of labelled galaxies (by a
hash of the galaxy id, so it does not move between rounds) is held out for metrics and
the temperature; the model learns from the rest.  Below that, every label is needed
for training, so metrics and the temperature come from K-fold cross-validation
(out-of-fold predictions) and the served model learns from all labels.

Across surveys (Dominguez Sanchez et al. 2019): the base head learns from survey A's
labels; each other survey with labels gets ``ml.heads.adapt_head`` (per-survey
alignment + head retraining with A's rows mixed in).  "before" is the base head on B's
labelled galaxies (it never saw them); "after" is the adapted head, cross-validated on
B's labels.  Surveys without labels are predicted by the base head directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np

from ml.active import entropy
from ml.calibration import calibrated_log_probs, fit_temperature
from ml.heads import AdaptConfig, Head, HeadConfig, adapt_head, fit_classifier, fit_regressor
from ml.metrics import (classification_summary, confusion_matrix, interval_coverage,
                        reliability_diagram, rmse)

HOLDOUT_MIN = 100         # labels needed before a fixed 20% hold-out replaces cross-validation
HOLDOUT_MODULUS = 5       # 1 in 5 labelled galaxies is held out
CV_FOLDS = 5              # folds of the small-sample cross-validation
ADAPT_MIN = 4             # target labels needed before a head is adapted to survey B

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
    order = np.random.default_rng(seed).permutation(n)
    return [f for f in np.array_split(order, min(k, n)) if len(f)]


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


def _oof_logits(x, y, k, cfg, x_all, fit=None) -> np.ndarray:
    """Out-of-fold member logits (M, N, K) by K-fold cross-validation."""
    fit = fit or (lambda xt, yt: _fit_cls(xt, yt, k, cfg, x_all=x_all))
    out = None
    for f in folds(len(y)):
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


def classification_metrics(probs: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro-F1, ECE (+ confusion, reliability) as JSON-ready."""
    probs = np.asarray(probs, dtype=np.float64)
    summary = classification_summary(probs, y, n_bins=10)
    rd = reliability_diagram(probs, y, n_bins=10)
    summary["confusion"] = confusion_matrix(y, probs.argmax(1), n_classes).tolist()
    summary["reliability"] = {k: [None if not np.isfinite(v) else float(v) for v in rd[k]]
                              for k in ("confidence", "accuracy")}
    summary["reliability"]["count"] = rd["count"].tolist()
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in summary.items()}


def fit_classification(x_all: np.ndarray, lab_pos: np.ndarray, y: np.ndarray, galaxy_ids: np.ndarray,
                       n_classes: int, cfg: HeadConfig, progress: Progress | None = None) -> tuple:
    """Base classifier on labelled rows lab_pos of x_all; returns (head, val metrics, n_train, n_val)."""
    x = x_all[lab_pos]
    if len(y) >= HOLDOUT_MIN:
        val = is_holdout(galaxy_ids[lab_pos])
        if val.sum() >= 2 and (~val).sum() >= 2:
            head = _fit_cls(x[~val], y[~val], n_classes, cfg, x[val], y[val], x_all)
            metrics = classification_metrics(head.predict_proba(x[val]), y[val], n_classes)
            metrics["validation"] = f"hold-out {100 // HOLDOUT_MODULUS}% of labelled galaxies"
            return head, metrics, int((~val).sum()), int(val.sum())
    oof = _oof_logits(x, y, n_classes, cfg, x_all)
    t = fit_temperature(oof, y) if oof is not None and len(y) >= 4 else 1.0
    head = _fit_cls(x, y, n_classes, cfg, x_all=x_all)
    head.temperature = t
    metrics = classification_metrics(_probs(oof, t), y, n_classes) if oof is not None else {}
    metrics["validation"] = f"{min(CV_FOLDS, len(y))}-fold cross-validation (fewer than {HOLDOUT_MIN} labels)"
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
    slim = lambda m: {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "n")}  # noqa: E731
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
def regression_metrics(y, mean, sigma) -> dict:
    return {"rmse": rmse(y, mean), "coverage_90": interval_coverage(y, mean, sigma, 0.9),
            "coverage_68": interval_coverage(y, mean, sigma, 0.6827),
            "mean_sigma": float(np.mean(sigma)), "n": int(len(y))}


def fit_regression(x_all, lab_pos, y, galaxy_ids, cfg: HeadConfig) -> tuple:
    x = x_all[lab_pos]
    if len(y) >= HOLDOUT_MIN:
        val = is_holdout(galaxy_ids[lab_pos])
        if val.sum() >= 2 and (~val).sum() >= 2:
            head = fit_regressor(x[~val], y[~val], cfg, x_val=x[val], y_val=y[val], x_all=x_all)
            mean, sigma = head.predict(x[val])
            metrics = regression_metrics(y[val], mean, sigma)
            metrics["validation"] = f"hold-out {100 // HOLDOUT_MODULUS}% of labelled galaxies"
            return head, metrics, int((~val).sum()), int(val.sum())
    mean, sigma = np.zeros(len(y)), np.ones(len(y))
    for f in folds(len(y)):
        train = np.setdiff1d(np.arange(len(y)), f)
        if len(train) >= 2:
            m, s = fit_regressor(x[train], y[train], cfg, x_all=x_all).predict(x[f])
            mean[f], sigma[f] = m, s
        else:
            mean[f], sigma[f] = y[train].mean() if len(train) else 0.0, 1.0
    scale = float(np.sqrt(np.mean(((y - mean) / sigma) ** 2))) if len(y) >= 4 else 1.0
    head = fit_regressor(x, y, cfg, x_all=x_all)
    head.sigma_scale = scale
    metrics = regression_metrics(y, mean, sigma * scale)
    metrics["validation"] = f"{min(CV_FOLDS, len(y))}-fold cross-validation (fewer than {HOLDOUT_MIN} labels)"
    return head, metrics, int(len(y)), int(len(y))


def predict_regression(head, x) -> dict[str, np.ndarray]:
    mean, sigma = head.predict(x)
    return {"mean": mean.astype(np.float32), "sigma": sigma.astype(np.float32),
            "uncertainty": sigma.astype(np.float32)}
