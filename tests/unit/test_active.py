"""ml/active.py: query strategies, their reasons, and the oracle simulation loop."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from ml.active import (STRATEGIES, labels_saved, labels_to_reach, query,
                       simulate_active_learning, uncertainty)
from ml.heads import HeadConfig

pytestmark = pytest.mark.unit

# Hand-made probabilities where each uncertainty measure has a different favourite:
HAND = np.array([
    [0.98, 0.01, 0.01],    # 0 confident
    [0.50, 0.495, 0.005],  # 1 smallest margin (0.005)
    [0.43, 0.41, 0.16],    # 2 lowest top probability (0.43)
    [0.44, 0.28, 0.28],    # 3 highest entropy (1.074 nats)
    [0.90, 0.05, 0.05],    # 4 confident
])
X_HAND = np.arange(10, dtype=np.float32).reshape(5, 2)


@pytest.mark.parametrize("strategy, favourite", [("least_confidence", 2), ("margin", 1), ("entropy", 3)])
def test_uncertainty_strategies_pick_their_most_uncertain_row(strategy, favourite):
    idx, reasons = query(strategy, X_HAND, HAND, [], 1)
    assert idx.tolist() == [favourite]
    assert "top 20%" in reasons[0]
    full, _ = query(strategy, X_HAND, HAND, [], 5)
    assert full[-1] == 0                               # the most confident row comes last


def test_reasons_are_readable():
    _, reasons = query("entropy", X_HAND, HAND, [], 2)
    assert reasons[0] == "entropy 1.07 (top 20%)"
    _, reasons = query("margin", X_HAND, HAND, [], 1)
    assert reasons[0] == "margin 0.005 (top 20%)"


def test_bald_prefers_member_disagreement_over_shared_uncertainty():
    # row 0: every member says 50/50; row 1: members are sure but disagree; same mean entropy
    members = np.array([[[0.5, 0.5], [0.99, 0.01], [0.9, 0.1]],
                        [[0.5, 0.5], [0.01, 0.99], [0.9, 0.1]]])          # (M=2, N=3, K=2)
    assert uncertainty("entropy", members)[0] == pytest.approx(uncertainty("entropy", members)[1])
    idx, reasons = query("bald", np.zeros((3, 2)), members, [], 1)
    assert idx.tolist() == [1] and reasons[0].startswith("BALD")
    assert uncertainty("bald", members)[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        query("bald", np.zeros((3, 2)), members.mean(0), [], 1)       # needs members


def clumps(seed: int = 0):
    """A tight clump of 20 very uncertain rows at the origin, 4 far clumps of 20 a bit less
    uncertain, and 200 confident rows. Returns x (300, 2), probs (300, 2), clump id (300,)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [-10, 0], [0, -10], [20, 20]], dtype=float)
    which = np.repeat(np.arange(6), [20, 20, 20, 20, 20, 200])
    x = centres[which] + rng.normal(scale=0.05, size=(300, 2))
    p0 = np.where(which == 0, 0.5, np.where(which < 5, 0.6 + 0.05 * rng.uniform(size=300), 0.99))
    return x.astype(np.float32), np.stack([p0, 1 - p0], axis=1), which


def test_diverse_batch_is_more_spread_than_top_k():
    x, probs, which = clumps()
    top, _ = query("entropy", x, probs, [], 5)
    div, reasons = query("diverse", x, probs, [], 5, seed=1)
    assert set(which[top]) == {0}                       # top-k spends the batch on one clump
    assert len(set(which[div])) >= 4
    assert pdist(x[div]).min() > 10 * pdist(x[top]).min()
    assert "most uncertain of cluster" in reasons[0]


def test_coreset_fills_the_gaps_left_by_labelled_rows():
    x, _, which = clumps()
    labelled = np.flatnonzero(which == 5)                # everything in the big clump is labelled
    idx, reasons = query("coreset", x, None, labelled, 5, seed=0)
    assert set(which[idx]) == {0, 1, 2, 3, 4} and "core-set" in reasons[0]


def test_cold_start_picks_one_galaxy_per_blob():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], dtype=float)
    which = np.repeat(np.arange(4), [400, 100, 30, 10])             # imbalanced "classes"
    x = (centres[which] + rng.normal(size=(540, 2))).astype(np.float32)
    idx, reasons = query("random", x, None, [], 4, seed=3, cold_start_below=8)   # forced cold start
    assert sorted(which[idx].tolist()) == [0, 1, 2, 3]
    assert all(r.startswith("diverse seed: nearest to centroid of cluster") for r in reasons)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_labelled_rows_are_never_picked_again(strategy):
    x, probs, _ = clumps(seed=2)
    members = np.stack([probs, probs[:, ::-1] * 0.5 + probs * 0.5])
    labelled = np.argsort(-uncertainty("entropy", probs))[:30]      # the most tempting rows
    idx, reasons = query(strategy, x, members, labelled, 20, seed=0)
    assert len(idx) == 20 == len(reasons) == len(set(idx.tolist()))
    assert not set(idx.tolist()) & set(labelled.tolist())
    rest, _ = query(strategy, x, members, np.setdiff1d(np.arange(300), [7, 8]), 20)
    assert sorted(rest.tolist()) == [7, 8]                           # batch capped by what is left


def test_simulation_curve_and_label_savings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, 600)
    x = (centres[y] + rng.normal(size=(600, 8))).astype(np.float32)
    calls = []
    curve = simulate_active_learning(x, y, "entropy", seed=0, initial=10, batch=10, budget=40,
                                     head_cfg=HeadConfig(kind="logistic"), eval_idx=np.arange(400, 600),
                                     progress=lambda done, total, msg: calls.append((done, total)))
    assert [n for n, _, _ in curve] == [10, 20, 30, 40] and calls[-1] == (40, 40)
    assert curve[-1][1] > 0.9 and 0 <= curve[-1][2] <= 1
    fake = [(10, 0.5, 0.5), (20, 0.7, 0.6), (30, 0.8, 0.7)]
    assert labels_to_reach(fake, 0.7) == 20 and labels_to_reach(fake, 0.9) is None
    saved = labels_saved([(10, 0.6, 0), (20, 0.85, 0)], fake, at_labels=30)
    assert saved["target_accuracy"] == 0.8 and saved["labels_needed"] == 20
    assert saved["fraction_saved"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy", "bald", "diverse"])
def test_regression_sigma_is_the_uncertainty_of_every_model_strategy(strategy):
    x, _, which = clumps(seed=3)
    sigma = np.where(which == 0, 2.0, np.where(which < 5, 1.0, 0.1))     # (300,) predictive sigma
    sigma[17] = 5.0
    idx, reasons = query(strategy, x, sigma, [], 5, seed=0)
    assert idx[0] == 17 and reasons[0].startswith("predictive sigma 5")
    if strategy == "diverse":
        assert len(set(which[idx])) >= 3                              # spread over clumps, not five from clump 0
    else:
        assert set(which[idx]) == {0}


def test_sustained_reach_ignores_a_lucky_early_touch():
    noisy = [(20, 0.80, 0), (40, 0.91, 0), (60, 0.85, 0), (80, 0.90, 0), (100, 0.92, 0)]
    assert labels_to_reach(noisy, 0.90) == 40
    assert labels_to_reach(noisy, 0.90, sustained=True) == 80
    assert labels_to_reach(noisy, 0.95, sustained=True) is None
    saved = labels_saved(noisy, [(20, 0.7, 0), (100, 0.9, 0)], at_labels=100, sustained=True)
    assert saved["labels_needed"] == 80 and saved["fraction_saved"] == pytest.approx(0.2)
