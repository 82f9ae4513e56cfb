"""Simulated Galaxy Zoo-style volunteer votes: the public catalogue of the simulated surveys.

The simulator's truth (class, rarity, structure) stays hidden, as it would for a real sky.
What a real survey offers instead is a catalogue of people's classifications, e.g. Galaxy
Zoo vote fractions; this module draws one for the simulated population so that the app
treats simulated and real surveys the same way (catalogue columns and people's labels only).

Noise model (every number is a VoteConfig default):
- each galaxy is classified by ``n_volunteers`` = 20 volunteers;
- each answers "don't know" with probability ``dont_know_rate`` = 0.08;
- otherwise a volunteer picks a wrong class with the galaxy's own confusion rate, else the true
  class; a wrong answer is the class's look-alike (LOOKALIKE: elliptical <-> spiral, edge_on ->
  spiral, merger -> elliptical) with probability ``lookalike_share`` = 0.7, else any other class;
- galaxies differ in difficulty: the per-galaxy confusion rate is Beta distributed with mean
  ``confusion_rate`` = 0.15 and concentration ``difficulty_spread`` = 4 (about 5 % of the
  galaxies have a confusion rate above 0.5, so most of their volunteers are wrong);
- the consensus ``gz_label`` is the class with more than ``consensus_threshold`` = 0.5 of
  all votes ("don't know" votes count in the total), else "uncertain".
With the defaults (5,000 galaxies, equal classes) the consensus is right for about 91 % of the
galaxies, "uncertain" for 8 % and wrong for 1.5 %: usable labels with realistic noise.
The same votes go to both simulated surveys (one population, as for the truth).

Columns (ml.vocab spells the names): gz_vote_elliptical, gz_vote_spiral, gz_vote_edge_on,
gz_vote_merger, gz_vote_dont_know (fractions of gz_n_votes, summing to 1), gz_n_votes, gz_label.

The votes use their own random stream ([seed, _VOTE_STREAM]), so adding them changed neither
the images nor the truth of any simulation seed.

Example:
    cols = simulate_votes(["spiral", "elliptical"], seed=0)
    cols["gz_label"][0], cols["gz_vote_spiral"][0]    # ("spiral", 0.85), for instance
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.vocab import (CLASSES, DONT_KNOW, EDGE_ON, ELLIPTICAL, GZ_LABEL_KEY, GZ_N_VOTES_KEY,
                      GZ_VOTE_PREFIX, MERGER, SPIRAL, UNCERTAIN)

_VOTE_STREAM = 20  # distinct from ml.sim_scenes (10, 11) and ml.sim_render (1, 2) streams
# The wrong answer volunteers give most often per class: faint spirals look smooth (and smooth
# ellipticals with a hint of structure get called spirals), thick edge-on disks look like
# inclined spirals, and a merger's pair is read as a single (elliptical) blob.
LOOKALIKE = {ELLIPTICAL: SPIRAL, SPIRAL: ELLIPTICAL, EDGE_ON: SPIRAL, MERGER: ELLIPTICAL}


@dataclass(frozen=True)
class VoteConfig:
    n_volunteers: int = 20  # classifications per galaxy (GZ1 averaged ~38, GZ2 ~44; fewer = noisier)
    confusion_rate: float = 0.15  # mean chance that an answering volunteer picks a wrong class
    difficulty_spread: float = 4.0  # Beta concentration of per-galaxy confusion; lower = more hard galaxies
    lookalike_share: float = 0.7  # share of wrong answers that go to the class's look-alike (LOOKALIKE)
    dont_know_rate: float = 0.08  # share of classifications that are "don't know"
    consensus_threshold: float = 0.5  # a class needs more than this share of all votes to be the consensus


def vote_columns() -> list[str]:
    """Names of the vote-fraction columns, in class order, "don't know" last."""
    return [GZ_VOTE_PREFIX + c for c in (*CLASSES, DONT_KNOW)]


def simulate_votes(classes: Sequence[str], seed: int, cfg: VoteConfig = VoteConfig()) -> dict[str, np.ndarray]:
    """Volunteer votes for galaxies of true classes ``classes`` (ml.vocab.CLASSES names).

    Returns {column: (N,) array}: float vote fractions per answer, int gz_n_votes and the
    str consensus gz_label. Deterministic in (classes, seed, cfg).
    """
    index = {c: i for i, c in enumerate(CLASSES)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise ValueError(f"no volunteer model for classes {unknown}; expected some of {list(CLASSES)}")
    n, k = len(classes), len(CLASSES)
    true = np.array([index[c] for c in classes], dtype=np.int64)  # (N,)
    rng = np.random.default_rng([int(seed), _VOTE_STREAM])
    m, s = cfg.confusion_rate, cfg.difficulty_spread
    confusion = rng.beta(m * s, (1 - m) * s, size=n) if 0 < m < 1 else np.full(n, float(m))  # (N,)
    answering = 1.0 - cfg.dont_know_rate
    p = np.empty((n, k + 1))  # (N, K classes + don't know)
    wrong = answering * confusion  # (N,)
    lookalike = np.array([index[LOOKALIKE[c]] for c in CLASSES])[true]  # (N,)
    p[:, :k] = (wrong * (1.0 - cfg.lookalike_share) / (k - 1))[:, None]
    p[np.arange(n), lookalike] += wrong * cfg.lookalike_share
    p[np.arange(n), true] = answering * (1.0 - confusion)
    p[:, k] = cfg.dont_know_rate
    counts = rng.multinomial(cfg.n_volunteers, p) if n else np.zeros((0, k + 1), np.int64)  # (N, K+1)
    fractions = counts / max(cfg.n_volunteers, 1)
    top = counts[:, :k].argmax(axis=1)
    won = fractions[np.arange(n), top] > cfg.consensus_threshold
    out = {name: np.round(fractions[:, j], 4) for j, name in enumerate(vote_columns())}
    out[GZ_N_VOTES_KEY] = np.full(n, cfg.n_volunteers, dtype=np.int64)
    out[GZ_LABEL_KEY] = np.where(won, np.asarray(CLASSES, dtype=object)[top], UNCERTAIN)
    return out
