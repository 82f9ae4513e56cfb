"""The simulated surveys' public catalogue: photometry plus volunteer votes, truth kept apart."""
from __future__ import annotations

import pytest

from ml import simulate
from ml.sim_votes import vote_columns
from webapp.catalog.services.simulation import galaxy_rows

pytestmark = pytest.mark.unit

CFG = simulate.SimConfig(n=200, seed=2, processes=1)


def test_rows_carry_volunteer_votes_in_metadata_and_truth_stays_the_simulators():
    population = simulate.simulate_population(CFG)
    rows = galaxy_rows(population, CFG.seed)
    public = {"mag_r", "g_r", "r_i", "gz_n_votes", "gz_label", *vote_columns()}
    assert [set(r.metadata) for r in rows] == [public] * len(rows)
    assert all(not set(r.truth) & public - {"mag_r", "g_r", "r_i"} for r in rows)
    assert [r.truth["class"] for r in rows] == [p["class"] for p in population]
    # the consensus is a noisy copy of the hidden class: mostly right, never identical by construction
    agree = sum(r.metadata["gz_label"] == r.truth["class"] for r in rows) / len(rows)
    assert 0.8 < agree < 1.0
    assert {type(v) for r in rows for v in r.metadata.values()} <= {float, int, str}  # JSON-ready


def test_same_seed_gives_the_same_catalogue():
    population = simulate.simulate_population(CFG)
    first = [r.metadata for r in galaxy_rows(population, CFG.seed)]
    assert first == [r.metadata for r in galaxy_rows(population, CFG.seed)]
