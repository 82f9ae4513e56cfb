"""services/training.py: validation split, cross-validation, calibration and adaptation on tiny arrays."""
import numpy as np
import pytest

from ml.heads import HeadConfig
from webapp.labeling.services import training

pytestmark = pytest.mark.unit


def blobs(n, k=3, d=6, seed=0, shift=0.0, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(size=(k, d)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + shift + rng.normal(scale=noise, size=(n, d))).astype(np.float32), y


def test_holdout_is_stable_and_about_one_in_five():
    ids = np.arange(1, 20001)
    held = training.is_holdout(ids)
    assert 0.18 < held.mean() < 0.22
    np.testing.assert_array_equal(training.is_holdout(ids[::-1]), held[::-1])   # depends on the id only


def test_head_config_rejects_unknown_keys_by_name():
    assert training.head_config({"kind": "logistic", "hidden": [8]}).hidden == (8,)
    with pytest.raises(ValueError, match=r"unknown head_config keys \['layers'\]"):
        training.head_config({"layers": 3})


def test_few_labels_use_cross_validation_many_use_the_holdout():
    x, y = blobs(400)
    cfg = HeadConfig(kind="logistic")
    head, metrics, n_train, n_val = training.fit_classification(x, np.arange(30), y[:30], np.arange(400), 3, cfg)
    assert "cross-validation" in metrics["validation"] and (n_train, n_val) == (30, 30)
    assert metrics["accuracy"] > 0.9 and len(metrics["confusion"]) == 3
    head, metrics, n_train, n_val = training.fit_classification(x, np.arange(300), y[:300], np.arange(1, 401), 3, cfg)
    assert "hold-out" in metrics["validation"] and n_train + n_val == 300 and 40 < n_val < 80
    assert sum(map(sum, metrics["confusion"])) == n_val


def test_cross_validated_temperature_softens_an_overconfident_head():
    x, y = blobs(300, noise=3.0, seed=1)                   # overlapping classes
    cfg = HeadConfig(kind="logistic", logistic_c=1e4)       # almost no regularisation: overconfident
    head, metrics, _, _ = training.fit_classification(x, np.arange(60), y[:60], np.arange(300), 3, cfg)
    assert head.temperature > 1.5
    assert metrics["ece"] < 0.2


def test_adaptation_recovers_a_shifted_survey():
    xa, ya = blobs(300, seed=2)
    xb, yb = blobs(300, seed=3, shift=2.5)                  # survey B: the same classes, offset
    x_all = np.concatenate([xa, xb])
    cfg = HeadConfig(kind="logistic")
    base, _, _, _ = training.fit_classification(x_all, np.arange(300), ya, np.arange(600), 3, cfg)
    tgt = np.arange(300, 330)
    head, result = training.adapt_classification(base, x_all, np.arange(300), ya, tgt, yb[:30],
                                                 np.arange(300, 600), 3, training.AdaptConfig(method="refit"))
    assert result["n_target_labels"] == 30 and result["after"]["accuracy"] >= result["before"]["accuracy"]
    assert (head.predict_proba(xb[30:]).argmax(1) == yb[30:]).mean() > 0.9


def test_regression_reports_rmse_and_coverage():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = 3 * x[:, 0] + rng.normal(scale=0.3, size=200)
    head, metrics, _, _ = training.fit_regression(x, np.arange(50), y[:50], np.arange(200), HeadConfig(kind="linear"))
    assert metrics["rmse"] < 0.6 and 0.6 < metrics["coverage_90"] <= 1.0
    pred = training.predict_regression(head, x)
    assert pred["mean"].shape == pred["sigma"].shape == (200,) and (pred["sigma"] > 0).all()
