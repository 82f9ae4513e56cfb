"""Fit a task's head on labelled embeddings, validate it, carry it across surveys, predict.

Orchestration only (no Django, so it is easy to test and the round job stays thin): it picks
the rows, calls ml/ and builds the dicts a round stores.  The numerics are in ml/:
ml.heads fits the heads, ml.validation chooses the split (K-fold CV below `cv_below`
labels, else a stable 20% hold-out by galaxy id), makes out-of-fold predictions and
computes the metrics with cross-fitted calibration, ml.adapt carries a head across surveys.
Either way the served model is the head fitted on the training labels.

Across surveys (Dominguez Sanchez et al. 2019): the base head learns from survey A's
labels; each other survey with labels gets ``ml.adapt.adapt_head`` (per-survey
alignment + head retraining with A's rows mixed in).  "before" is the base head on B's
labelled galaxies (it never saw them); "after" is the adapted head, cross-validated on
B's labels.  Surveys without labels are predicted by the base head directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ml.active import entropy
from ml.adapt import AdaptConfig, adapt_head
from ml.folds import kfold, stratified_kfold
from ml.heads import Head, HeadConfig, fit_classifier, fit_regressor, stats_sample
from ml.progress import Progress
from ml.validation import (HOLDOUT_MODULUS, VALIDATION, ValidationConfig, calibrated_classification_metrics,
                           calibrated_probs, calibrated_regression_metrics, classification_metrics,
                           oof_logits, oof_regression, uses_holdout)

CV_FOLDS = 5              # folds of the transfer ("after") cross-validation
ADAPT_MIN = 4             # target labels needed before a head is adapted to survey B


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
    oof = oof_logits(x, y, n_classes, lambda xt, yt: _fit_cls(xt, yt, n_classes, cfg, x_all=x_all),
                     stratified_kfold(y, vcfg.cv_folds, vcfg.seed))
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
    x_src, x_tgt = x_all[src_pos], x_all[tgt_pos]
    x_tgt_all = x_all[stats_sample(np.asarray(tgt_all_pos))]    # survey B's statistics from <= STATS_SAMPLE rows
    before = classification_metrics(base.predict_proba(x_tgt), y_tgt, n_classes)

    def adapt(xt, yt):
        return adapt_head(base, xt, yt, acfg, x_source=x_src, y_source=y_src, x_target_all=x_tgt_all)

    oof = oof_logits(x_tgt, y_tgt, n_classes, adapt, kfold(len(y_tgt), CV_FOLDS))
    after = classification_metrics(calibrated_probs(oof, base.temperature), y_tgt, n_classes)
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
    mean, sigma = oof_regression(x, y, lambda xt, yt: fit_regressor(xt, yt, cfg, x_all=x_all),
                                 kfold(len(y), vcfg.cv_folds, vcfg.seed))
    head = fit_regressor(x, y, cfg, x_all=x_all)
    head.sigma_scale, metrics = calibrated_regression_metrics(y, mean, sigma, vcfg)
    metrics["validation"] = validation_text(vcfg, int(len(y)), holdout=False)
    metrics["evaluation"] = "cv"
    return head, metrics, int(len(y)), int(len(y))


def predict_regression(head, x) -> dict[str, np.ndarray]:
    mean, sigma = head.predict(x)
    return {"mean": mean.astype(np.float32), "sigma": sigma.astype(np.float32),
            "uncertainty": sigma.astype(np.float32)}
