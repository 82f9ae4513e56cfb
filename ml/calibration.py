"""Temperature scaling (Guo et al. 2017): one scalar T > 0 that softens or sharpens logits.

p = softmax(z / T). T > 1 softens an over-confident model, T < 1 sharpens an under-confident
one; argmax (so accuracy) never changes. T is fitted by minimising the negative
log-likelihood of held-out labels, in log T so that T stays positive, with a bounded 1-D
search (scipy minimize_scalar): the NLL is smooth and unimodal in log T, and a bounded
scalar search needs no gradients or learning rate.

Ensembles: logits may be (M, N, K), one slice per member (or per MC-dropout pass). The
calibrated prediction is then the MEAN over members of softmax(z_m / T), so that
`predict_proba == member_probs.mean(0)` holds exactly for heads that use it.
"""
from __future__ import annotations

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
