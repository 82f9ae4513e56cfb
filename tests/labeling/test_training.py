"""services/training.py (with ml/validation.py): validation split, cross-validation, calibration and adaptation on tiny arrays."""
import numpy as np
import pytest

from ml.calibration import calibrated_log_probs
from ml.heads import HeadConfig
from ml import validation
from ml.metrics import expected_calibration_error
from webapp.labeling.services import training

pytestmark = pytest.mark.unit


def blobs(n, k=3, d=6, seed=0, shift=0.0, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(size=(k, d)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + shift + rng.normal(scale=noise, size=(n, d))).astype(np.float32), y


def test_holdout_is_stable_and_about_one_in_five():
    ids = np.arange(1, 20001)
    held = validation.is_holdout(ids)
    assert 0.18 < held.mean() < 0.22
    np.testing.assert_array_equal(validation.is_holdout(ids[::-1]), held[::-1])   # depends on the id only


def test_head_config_rejects_unknown_keys_by_name():
    assert training.head_config({"kind": "logistic", "hidden": [8]}).hidden == (8,)
    with pytest.raises(ValueError, match=r"unknown head_config keys \['layers'\]"):
        training.head_config({"layers": 3})


def test_few_labels_use_cross_validation_many_use_the_holdout():
    x, y = blobs(400)
    cfg = HeadConfig(kind="logistic")
    head, metrics, n_train, n_val = training.fit_classification(x, np.arange(30), y[:30], np.arange(400), 3, cfg)
    assert metrics["evaluation"] == "cv" and (n_train, n_val) == (30, 30)
    assert metrics["validation"] == "5-fold CV over 30 labels (fewer than 200)"
    assert metrics["accuracy"] > 0.9 and len(metrics["confusion"]) == 3
    head, metrics, n_train, n_val = training.fit_classification(x, np.arange(300), y[:300], np.arange(1, 401), 3, cfg)
    assert metrics["evaluation"] == "holdout" and n_train + n_val == 300 and 40 < n_val < 80
    assert metrics["validation"] == f"hold-out 20% of labelled galaxies (n = {n_val})"
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


def test_reported_ece_is_cross_fitted_on_rows_the_temperature_never_saw(monkeypatch):
    """The round's ECE is the ECE of out-of-fold calibrated probabilities: each scored row's
    temperature came from other rows, and before/after are on the same untouched rows."""
    captured = []
    real = validation.cross_fit_temperature

    def spy(logits, y, split, **kw):
        captured.append((np.asarray(logits).copy(), np.asarray(y).copy(), real(logits, y, split, **kw)))
        return captured[-1][2]

    monkeypatch.setattr(validation, "cross_fit_temperature", spy)
    x, y = blobs(300, noise=3.0, seed=1)
    cfg = HeadConfig(kind="logistic", logistic_c=1e4)               # overconfident head
    for n_labels in (60, 300):                                     # CV (out-of-fold logits) and hold-out
        captured.clear()
        head, metrics, _, n_val = training.fit_classification(x, np.arange(n_labels), y[:n_labels],
                                                              np.arange(1, 301), 3, cfg)
        (logits, y_eval, crossed), = captured
        assert len(y_eval) == n_val == metrics["n"] == metrics["calibration"]["n"]
        for scored, calib in zip(crossed.evaluation_rows, crossed.calibration_rows):
            assert np.intersect1d(scored, calib).size == 0 and len(calib) > 0
        assert sorted(np.concatenate(crossed.evaluation_rows).tolist()) == list(range(n_val))
        assert metrics["ece"] == pytest.approx(expected_calibration_error(crossed.calibrated, y_eval, 10))
        raw = np.exp(calibrated_log_probs(logits, 1.0))                # the same rows, uncalibrated
        assert metrics["ece_before_calibration"] == pytest.approx(expected_calibration_error(raw, y_eval, 10))
        assert head.temperature > 1.2                                  # served T: softens, fitted on all rows
        lo, hi = metrics["intervals"]["accuracy"]
        assert lo < metrics["accuracy"] < hi and hi - lo > 0.1      # few galaxies: a wide interval
