"""ml/calibration.py: temperature scaling."""
from __future__ import annotations

import numpy as np
import pytest

from ml.calibration import apply_temperature, calibrated_log_probs, fit_temperature
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
