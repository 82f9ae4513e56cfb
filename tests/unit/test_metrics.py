"""ml/metrics.py: classification, calibration, regression and labeller-agreement metrics."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from ml.metrics import (accuracy, balanced_accuracy, balanced_accuracy_from_confusion, batched_confusion,
                        batched_ece, bootstrap_rows, classification_intervals, classification_summary,
                        cohen_kappa, confusion_matrix, expected_calibration_error, fleiss_kappa,
                        interval_coverage, macro_f1, macro_f1_from_confusion, regression_intervals,
                        reliability_diagram, rmse, vote_counts, vote_entropy, vote_fractions,
                        wilson_interval)

pytestmark = pytest.mark.unit

# Fleiss' kappa worked example from Wikipedia ("Fleiss' kappa", Worked example):
# 10 subjects, 14 raters each, 5 categories; P-bar = 0.378, P_e = 0.213, kappa = 0.210.
WIKIPEDIA_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def test_fleiss_kappa_matches_wikipedia_worked_example():
    assert fleiss_kappa(WIKIPEDIA_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_perfect_agreement_and_unequal_raters():
    assert fleiss_kappa(np.array([[5, 0], [0, 3], [4, 0]])) == pytest.approx(1.0)
    # unequal rater counts: reduces to the equal-n formula when every row has the same n
    equal = np.array([[3, 1], [2, 2], [0, 4]])
    assert fleiss_kappa(equal) == pytest.approx(fleiss_kappa(np.vstack([equal, [[1, 0]]])))


def test_cohen_kappa_skips_missing_votes():
    a = np.array([0, 1, 1, 2, -1, 0])
    b = np.array([0, 1, 2, 2, 1, -1])
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score([0, 1, 1, 2], [0, 1, 2, 2]))


def test_vote_fractions_and_entropy():
    votes = np.array([[0, 0, 0, -1], [0, 1, 0, 1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(vote_counts(votes, 3), [[3, 0, 0], [2, 2, 0], [0, 0, 0]])
    frac = vote_fractions(votes, 3)
    np.testing.assert_allclose(frac[:2], [[1, 0, 0], [0.5, 0.5, 0]])
    assert np.isnan(frac[2]).all()
    np.testing.assert_allclose(vote_entropy(frac[:2]), [0.0, np.log(2)])


def test_classification_metrics_on_imbalanced_toy():
    y = np.array([0] * 8 + [1, 1])
    pred = np.array([0] * 8 + [0, 1])
    assert accuracy(y, pred) == pytest.approx(0.9)
    assert balanced_accuracy(y, pred) == pytest.approx((1.0 + 0.5) / 2)
    assert macro_f1(y, pred, 3) == pytest.approx((16 / 17 + 2 / 3 + 0) / 3)
    np.testing.assert_array_equal(confusion_matrix(y, pred, 3), [[8, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_ece_by_hand():
    # bin (0.6, 0.6667]: conf 0.62, 1 of 2 right -> |0.5 - 0.62|; bin (0.8667, 0.9333]: conf 0.9, right
    probs = np.array([[0.62, 0.38], [0.38, 0.62], [0.9, 0.1]])
    y = np.array([0, 0, 0])
    rd = reliability_diagram(probs, y, n_bins=15)
    assert rd["count"].sum() == 3 and rd["count"][9] == 2 and rd["count"][13] == 1
    assert expected_calibration_error(probs, y, 15) == pytest.approx(2 / 3 * 0.12 + 1 / 3 * 0.1)
    assert np.isnan(rd["accuracy"][0])  # empty bins are NaN, not 0


def test_ece_zero_for_calibrated_predictions():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    y = (rng.uniform(size=conf.size) > conf).astype(int)     # class 0 right with probability conf
    probs = np.stack([conf, 1 - conf], axis=1)
    assert expected_calibration_error(probs, y) < 0.02
    assert expected_calibration_error(np.stack([np.ones_like(conf), 0 * conf], 1), y) > 0.2
    assert set(classification_summary(probs, y)) >= {"accuracy", "ece", "macro_f1", "nll"}


def test_rmse_and_interval_coverage():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=50000)
    assert rmse([1.0, 3.0], [0.0, 0.0]) == pytest.approx(np.sqrt(5))
    assert interval_coverage(truth, np.zeros_like(truth), np.ones_like(truth), 0.9) == pytest.approx(0.9, abs=0.01)
    assert interval_coverage(truth, np.zeros_like(truth), 0.5 * np.ones_like(truth), 0.9) < 0.65


# ---------------------------------------------------------------- intervals
def test_wilson_interval_matches_the_hand_computed_value():
    # 7 of 10 correct, 95%: z = 1.95996; centre = (0.7 + z^2/20) / (1 + z^2/10) = 0.64449,
    # half-width = z sqrt(0.021 + z^2/400) / (1 + z^2/10) = 0.24772 -> [0.3968, 0.8922]
    lo, hi = wilson_interval(7, 10)
    assert (lo, hi) == (pytest.approx(0.39677, abs=1e-4), pytest.approx(0.89221, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)  # in [0, 1]
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)            # not a zero-width interval
    lo90, hi90 = wilson_interval(7, 10, level=0.9)
    assert lo < lo90 < hi90 < hi
    assert all(np.isnan(wilson_interval(0, 0)))


def test_batched_metrics_equal_sklearn_on_each_resample():
    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    pred[y == 3] = 0                                            # a class never predicted
    probs = rng.dirichlet(np.ones(4), 50)
    rows = bootstrap_rows(50, 6, seed=1)
    cm = batched_confusion(y, pred, 4, rows)
    for b in range(6):
        np.testing.assert_array_equal(cm[b], confusion_matrix(y[rows[b]], pred[rows[b]], 4))
        assert balanced_accuracy_from_confusion(cm)[b] == pytest.approx(balanced_accuracy(y[rows[b]], pred[rows[b]]))
        assert macro_f1_from_confusion(cm)[b] == pytest.approx(macro_f1(y[rows[b]], pred[rows[b]], 4))
        assert batched_ece(probs, y, rows, 15)[b] == pytest.approx(
            expected_calibration_error(probs[rows[b]], y[rows[b]], 15))


def test_intervals_contain_the_metric_and_shrink_with_more_galaxies():
    rng = np.random.default_rng(0)

    def toy(n):
        y = rng.integers(0, 2, n)
        probs = np.where(rng.uniform(size=n) < 0.75, y, 1 - y)[:, None] == np.arange(2)
        return np.where(probs, 0.8, 0.2), y

    widths = []
    for n in (20, 2000):
        probs, y = toy(n)
        summary, iv = classification_summary(probs, y), classification_intervals(probs, y)
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "ece"):
            assert iv[name][0] <= summary[name] <= iv[name][1], name
        widths.append(iv["balanced_accuracy"][1] - iv["balanced_accuracy"][0])
    assert widths[0] > 0.2 and widths[1] < 0.06                 # 20 galaxies: an honest wide band


def test_regression_intervals_rmse_bootstrap_and_coverage_wilson():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    iv = regression_intervals(y, np.zeros(200), np.ones(200))
    assert iv["rmse"][0] < rmse(y, np.zeros(200)) < iv["rmse"][1]
    inside = int((np.abs(y) <= 1.6448536).sum())
    assert iv["coverage_90"] == list(wilson_interval(inside, 200))
