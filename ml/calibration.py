"""Temperature scaling (Guo et al. 2017): one scalar T > 0 that softens or sharpens logits.

p = softmax(z / T). T > 1 softens an over-confident model, T < 1 sharpens an under-confident
one; argmax (so accuracy) never changes. T is fitted by minimising the negative
log-likelihood of held-out labels, in log T so that T stays positive, with a bounded 1-D
search (scipy minimize_scalar): the NLL is smooth and unimodal in log T, and a bounded
scalar search needs no gradients or learning rate.

Ensembles: logits may be (M, N, K), one slice per member (or per MC-dropout pass). The
calibrated prediction is then the MEAN over members of softmax(z_m / T), so that
`predict_proba == member_probs.mean(0)` holds exactly for heads that use it.

Judging calibration: a temperature fitted on rows and scored on the same rows looks better
than it is. `cross_fit_temperature` (and `cross_fit_sigma_scale` for regression sigmas)
splits the evaluation rows into folds and calibrates each fold with a fit on the others, so
the ECE (or coverage) reported after calibration is measured on rows the fit never used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

LOG_T_BOUNDS = (np.log(0.05), np.log(50.0))  # T outside [0.05, 50] means a broken model, not calibration


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / T over the last axis: (..., K) -> (..., K) float64 probabilities.

    Logits may contain -inf (a class the model can never predict): its probability stays 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def calibrated_log_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """log p(class) after temperature scaling; (N, K) or members (M, N, K) -> (N, K).

    For members, log of the mean of member probabilities (computed stably with logsumexp).
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    logp = log_softmax(z, axis=-1)
    if logp.ndim == 3:
        logp = logsumexp(logp, axis=0) - np.log(logp.shape[0])   # (N, K)
    return logp


def temperature_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood (nats) of labels y (N,) at temperature T."""
    logp = calibrated_log_probs(logits, temperature)
    picked = logp[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean(np.maximum(picked, -50.0)))   # cap: one impossible label can't dominate


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising validation NLL; logits (N, K) or members (M, N, K), y (N,).

    Returns 1.0 (no change) when there are no validation labels.
    """
    y = np.asarray(y)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda log_t: temperature_nll(logits, y, float(np.exp(log_t))),
                          bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


# ------------------------------------------------------------- judged on rows it never saw
@dataclass
class CrossFit:
    """Calibration cross-fitted over evaluation folds: every row is calibrated by a fit on
    the OTHER folds, so scores computed from `calibrated` never saw their own rows."""
    calibrated: np.ndarray                 # (N, K) probabilities, or (N,) sigma, calibrated out-of-fold
    params: list[float]                    # the temperature (or sigma scale) fitted per fold
    evaluation_rows: list[np.ndarray]      # rows scored with params[i]
    calibration_rows: list[np.ndarray]     # rows params[i] was fitted on (disjoint from evaluation_rows[i])


def cross_fit_temperature(logits: np.ndarray, y: np.ndarray, folds: list[np.ndarray],
                          fit: Callable[[np.ndarray, np.ndarray], float] = fit_temperature) -> CrossFit:
    """Temperature scaling judged honestly: for each fold, T is fitted on the other folds'
    logits (N, K) or members (M, N, K) and applied to this fold only. Returns (N, K)
    calibrated probabilities; a fold with no other rows keeps T = 1."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    n = len(y)
    probs = np.zeros((n, logits.shape[-1]))
    params, calib_rows = [], []
    for f in folds:
        rest = np.setdiff1d(np.arange(n), f)
        t = fit(logits[..., rest, :], y[rest]) if len(rest) else 1.0
        probs[f] = np.exp(calibrated_log_probs(logits[..., f, :], t))
        params.append(float(t))
        calib_rows.append(rest)
    return CrossFit(probs, params, [np.asarray(f) for f in folds], calib_rows)


def fit_sigma_scale(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> float:
    """Factor s so that z = (y - mean) / (s * sigma) has unit RMS (the Gaussian MLE of one
    variance factor); 1.0 with no rows."""
    if len(y) == 0:
        return 1.0
    z = (np.asarray(y, dtype=np.float64) - mean) / np.asarray(sigma, dtype=np.float64)
    return float(np.sqrt(np.mean(z ** 2)))


def cross_fit_sigma_scale(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                          folds: list[np.ndarray]) -> CrossFit:
    """Regression sigma rescaling judged honestly: each fold's sigma (N,) is scaled by the
    factor fitted on the other folds."""
    y, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mean, sigma))
    out, params, calib_rows = sigma.copy(), [], []
    for f in folds:
        rest = np.setdiff1d(np.arange(len(y)), f)
        s = fit_sigma_scale(y[rest], mean[rest], sigma[rest])
        out[f] = sigma[f] * s
        params.append(s)
        calib_rows.append(rest)
    return CrossFit(out, params, [np.asarray(f) for f in folds], calib_rows)
