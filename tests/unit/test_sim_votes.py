"""Simulated Galaxy Zoo-style volunteer votes (ml.sim_votes): the simulated surveys' public labels."""
from __future__ import annotations

import numpy as np
import pytest

from ml.sim_votes import LOOKALIKE, VoteConfig, simulate_votes, vote_columns
from ml.vocab import CLASSES, GZ_LABEL_KEY, GZ_N_VOTES_KEY, UNCERTAIN

pytestmark = pytest.mark.unit

TRUE = list(np.random.default_rng(3).choice(CLASSES, size=4000))


def test_columns_are_fractions_of_the_volunteers_that_sum_to_one():
    cols = simulate_votes(TRUE, seed=1)
    assert sorted(cols) == sorted([*vote_columns(), GZ_N_VOTES_KEY, GZ_LABEL_KEY])
    fractions = np.stack([cols[c] for c in vote_columns()], axis=1)   # (N, 5)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-9)
    assert np.allclose(fractions * 20, np.round(fractions * 20))        # whole votes out of 20
    assert cols[GZ_N_VOTES_KEY].tolist() == [20] * len(TRUE)


def test_noise_matches_the_stated_rates():
    cols = simulate_votes(TRUE, seed=1)
    label, true = cols[GZ_LABEL_KEY], np.asarray(TRUE)
    right, uncertain = (label == true).mean(), (label == UNCERTAIN).mean()
    wrong = 1 - right - uncertain
    assert 0.87 < right < 0.95 and 0.05 < uncertain < 0.12 and 0.005 < wrong < 0.03
    assert abs(cols["gz_vote_dont_know"].mean() - 0.08) < 0.01
    # an answering volunteer is wrong 15 % of the time on average
    answered = 1 - cols["gz_vote_dont_know"]
    on_true = np.stack([cols["gz_vote_" + c] for c in CLASSES], 1)[np.arange(len(true)),
                                                                  [CLASSES.index(c) for c in true]]
    assert abs(1 - on_true.sum() / answered.sum() - 0.15) < 0.02
    # wrong consensus goes mostly to the look-alike class
    mistakes = [(t, lab) for t, lab in zip(true, label) if lab not in (t, UNCERTAIN)]
    assert sum(lab == LOOKALIKE[t] for t, lab in mistakes) > 0.6 * len(mistakes)


def test_deterministic_by_seed_and_noise_free_config_gives_the_true_class():
    a, b, c = simulate_votes(TRUE, 7), simulate_votes(TRUE, 7), simulate_votes(TRUE, 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["gz_vote_spiral"], c["gz_vote_spiral"])
    clean = simulate_votes(TRUE, 7, VoteConfig(confusion_rate=0.0, dont_know_rate=0.0))
    assert clean[GZ_LABEL_KEY].tolist() == TRUE


def test_the_vote_stream_leaves_numpy_global_state_and_the_population_alone():
    from ml.simulate import SimConfig, simulate_population
    cfg = SimConfig(n=30, seed=4, processes=1)
    before = simulate_population(cfg)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    simulate_votes([r["class"] for r in before], seed=4)
    assert np.array_equal(np.random.get_state()[1], state)
    assert [r["class"] for r in simulate_population(cfg)] == [r["class"] for r in before]


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="no volunteer model"):
        simulate_votes(["spiral", "lens"], seed=0)
