"""ml/heads.py: classifier/regressor heads on frozen embeddings, saving (survey transfer: test_adapt.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge

from ml.heads import (Head, HeadConfig, RegHead, class_balanced_p, feature_stats, fit_classifier,
                      fit_regressor)
from ml.metrics import accuracy, interval_coverage, negative_log_likelihood, rmse

pytestmark = pytest.mark.unit

TINY = HeadConfig(kind="mlp_ensemble", hidden=(32,), n_members=3, min_steps=100, max_steps=150,
                  batch_size=64, threads=1)
LOGISTIC = HeadConfig(kind="logistic")


def blobs(n: int = 600, d: int = 16, k: int = 3, sep: float = 2.0, seed: int = 0):
    """(n, d) float32 rows from k Gaussian classes, like embeddings of galaxy types."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(k, d)) * sep
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("cfg", [LOGISTIC, TINY], ids=["logistic", "mlp_ensemble"])
def test_heads_learn_blobs_with_consistent_shapes(cfg):
    x, y = blobs()
    head = fit_classifier(x[:400], y[:400], 3, cfg)
    probs, members = head.predict_proba(x[400:]), head.member_probs(x[400:])
    assert probs.shape == (200, 3) and probs.dtype == np.float32
    assert members.shape == ((1 if cfg.kind == "logistic" else 3), 200, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(members.mean(0), probs, atol=1e-5)   # ensemble mean == prediction
    assert accuracy(y[400:], probs.argmax(1)) > 0.9


def test_validation_split_fits_a_temperature_that_lowers_nll():
    x, y = blobs(sep=0.5, seed=1)                     # overlapping classes: over-fitting is easy
    cfg = HeadConfig(**{**TINY.__dict__, "max_steps": 300, "min_steps": 300, "weight_decay": 0.0})
    head = fit_classifier(x[:200], y[:200], 3, cfg, x_val=x[200:400], y_val=y[200:400])
    assert head.temperature != 1.0
    raw = Head(head.cfg, 3, head.arrays, 1.0)
    assert negative_log_likelihood(head.predict_proba(x[400:]), y[400:]) < \
        negative_log_likelihood(raw.predict_proba(x[400:]), y[400:])


@pytest.mark.parametrize("cfg", [LOGISTIC, TINY], ids=["logistic", "mlp_ensemble"])
def test_state_round_trip_is_pickle_free(cfg, tmp_path):
    x, y = blobs(200)
    head = fit_classifier(x, y, 3, cfg, x_val=x[:50], y_val=y[:50])
    state = head.state_dict()
    np.savez(tmp_path / "w.npz", **state["arrays"])
    meta = json.dumps({k: v for k, v in state.items() if k != "arrays"})
    with np.load(tmp_path / "w.npz", allow_pickle=False) as f:
        again = Head.from_state({**json.loads(meta), "arrays": dict(f)})
    assert again.cfg == cfg and again.temperature == head.temperature
    np.testing.assert_array_equal(again.predict_proba(x), head.predict_proba(x))


def test_logistic_gives_zero_probability_to_classes_never_labelled():
    x, y = blobs(300, k=3)
    keep = y != 1
    for k_seen in (2, 1):                        # binary, then a single class so far
        sel = keep & (y <= (2 if k_seen == 2 else 0))
        probs = fit_classifier(x[sel], y[sel], 3, LOGISTIC).predict_proba(x)
        assert (probs[:, 1] == 0).all()
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert (probs[:, 0] == 1).all()


def test_mc_dropout_passes_differ():
    x, y = blobs(200)
    cfg = HeadConfig(**{**TINY.__dict__, "n_members": 2, "mc_samples": 3, "dropout": 0.3})
    members = fit_classifier(x, y, 3, cfg).member_probs(x[:20])
    assert members.shape == (6, 20, 3)
    assert np.abs(members[0] - members[1]).max() > 1e-3      # two dropout passes of member 0


def test_balanced_sampling_gives_each_class_equal_mass():
    y = np.array([0] * 90 + [1] * 10)
    p = class_balanced_p(y, 3, balanced=True)
    assert p[y == 0].sum() == pytest.approx(0.5) and p[y == 1].sum() == pytest.approx(0.5)
    np.testing.assert_allclose(class_balanced_p(y, 3, balanced=False), 0.01)


def heteroscedastic(n: int = 1500, seed: int = 0):
    """y = 2 x0 + noise whose std grows with x1: 0.1 at x1 = -2, 1.0 at x1 = 2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 4)).astype(np.float32)
    noise = 0.1 + 0.9 * (x[:, 1] + 2) / 4
    return x, 2 * x[:, 0] + noise * rng.normal(size=n) + 5.0, noise


def test_mlp_regressor_mean_sigma_and_coverage():
    x, y, noise = heteroscedastic()
    cfg = HeadConfig(**{**TINY.__dict__, "min_steps": 400, "max_steps": 400})
    head = fit_regressor(x[:1000], y[:1000], cfg, x_val=x[1000:1200], y_val=y[1000:1200])
    mean, sigma = head.predict(x[1200:])
    assert rmse(y[1200:], mean) < 0.8 and sigma.shape == (300,)
    assert 0.8 < interval_coverage(y[1200:], mean, sigma, 0.9) < 0.98
    assert np.corrcoef(sigma, noise[1200:])[0, 1] > 0.7          # it learned WHERE it is noisy
    again = RegHead.from_state(head.state_dict())
    np.testing.assert_allclose(again.predict(x[1200:1205])[1], sigma[:5], rtol=1e-5)


def test_linear_regressor_matches_sklearn_bayesian_ridge():
    x, y, _ = heteroscedastic(400)
    head = fit_regressor(x, y, HeadConfig(kind="linear", target_scaling="none"))
    stats = feature_stats(x)
    ref = BayesianRidge().fit((x - stats["mean"]) / stats["scale"], y)
    want_mean, want_std = ref.predict((x - stats["mean"]) / stats["scale"], return_std=True)
    mean, sigma = head.predict(x)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sigma, want_std, rtol=1e-3)
