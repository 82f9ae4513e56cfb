"""ml/calibration.py: temperature scaling."""
from __future__ import annotations

import numpy as np
import pytest

from ml.calibration import (apply_temperature, calibrated_log_probs, cross_fit_sigma_scale,
                            cross_fit_temperature, fit_sigma_scale, fit_temperature)
from ml.metrics import expected_calibration_error


def calibrated_toy(n: int = 4000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (labels drawn from it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, k))
    p = apply_temperature(logits, 1.0)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, y


pytestmark = pytest.mark.unit


def test_temperature_fixes_overconfident_logits():
    logits, y = calibrated_toy()
    over = logits * 5                                      # over-confident copy
    t = fit_temperature(over[:2000], y[:2000])             # fit on a validation half
    assert t == pytest.approx(5.0, rel=0.2)
    before = expected_calibration_error(apply_temperature(over[2000:], 1.0), y[2000:])
    after = expected_calibration_error(apply_temperature(over[2000:], t), y[2000:])
    assert before > 0.15 and after < 0.05 and after < before / 3


def test_temperature_keeps_argmax_and_rejects_nonpositive():
    logits, _ = calibrated_toy(200)
    np.testing.assert_array_equal(apply_temperature(logits, 3.0).argmax(1), logits.argmax(1))
    with pytest.raises(ValueError):
        apply_temperature(logits, 0.0)


def test_member_logits_are_averaged_in_probability_space():
    rng = np.random.default_rng(3)
    members = rng.normal(size=(3, 10, 4))
    expected = np.log(apply_temperature(members, 2.0).mean(axis=0))
    np.testing.assert_allclose(calibrated_log_probs(members, 2.0), expected, atol=1e-10)
    assert fit_temperature(members, np.array([], dtype=int)) == 1.0


def test_impossible_class_logit_stays_zero_probability():
    logits = np.array([[1.0, -np.inf, 0.0]])
    p = apply_temperature(logits, 2.0)
    assert p[0, 1] == 0.0 and p.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- cross-fitting
def test_cross_fit_scores_every_row_with_a_temperature_that_never_saw_it():
    """The reported (calibrated) probabilities of a row come from a temperature fitted only
    on other rows: a spy fit records which rows it saw (each toy row's logits encode its
    index), and every fold's scored rows are disjoint from them."""
    n, k = 40, 3
    rows = np.arange(n, dtype=np.float64)
    logits = np.stack([rows, -rows, np.zeros(n)], axis=1) / 10          # row i -> logits[i, 0] = i / 10
    y = np.arange(n) % k
    seen: list[set[int]] = []

    def spy_fit(lg, yy):
        seen.append({int(round(v * 10)) for v in lg[:, 0]})
        return 2.0 + len(seen)                                        # a different T per fold

    folds = [np.arange(i, n, 4) for i in range(4)]
    crossed = cross_fit_temperature(logits, y, folds, fit=spy_fit)
    assert len(seen) == 4
    for f, used, t, calib in zip(folds, seen, crossed.params, crossed.calibration_rows):
        assert used.isdisjoint(f.tolist()) and used == set(range(n)) - set(f.tolist())
        assert sorted(used) == calib.tolist()
        np.testing.assert_allclose(crossed.calibrated[f], apply_temperature(logits[f], t))   # scored with that T
    assert crossed.params == [3.0, 4.0, 5.0, 6.0]


def test_cross_fit_temperature_still_fixes_overconfidence_out_of_fold():
    logits, y = calibrated_toy()
    over = logits * 5
    crossed = cross_fit_temperature(over, y, [np.arange(i, len(y), 5) for i in range(5)])
    assert all(t == pytest.approx(5.0, rel=0.2) for t in crossed.params)
    assert expected_calibration_error(crossed.calibrated, y) < 0.05 < expected_calibration_error(
        apply_temperature(over, 1.0), y)


def test_cross_fit_sigma_scale_uses_other_folds_only():
    rng = np.random.default_rng(0)
    y = rng.normal(scale=2.0, size=400)                               # true sigma 2, the model says 1
    folds = [np.arange(i, 400, 4) for i in range(4)]
    crossed = cross_fit_sigma_scale(y, np.zeros(400), np.ones(400), folds)
    for f, s, calib in zip(folds, crossed.params, crossed.calibration_rows):
        assert s == pytest.approx(fit_sigma_scale(y[calib], np.zeros(len(calib)), np.ones(len(calib))))
        assert np.intersect1d(f, calib).size == 0
        np.testing.assert_allclose(crossed.calibrated[f], s)
    assert all(s == pytest.approx(2.0, rel=0.15) for s in crossed.params)
