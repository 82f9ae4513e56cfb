"""Score-set and personal-ranking arrays on disk (.npz under DATA_DIR/anomalies/).

Score file (one per ScoreSet), row order = the EmbeddingSet's ids.npy:
  ids        (N,) int64 Galaxy ids
  combined   (N,) float32 rank-normalised blend in [0, 1]
  score_<m>  (N,) float32 raw score of method m (higher = more anomalous)
  rank_<m>   (N,) float32 its percentile rank in [0, 1]
Ranking file (one per PersonalRanking):
  order      (M,) int64 Galaxy ids, best first (galaxies scored at fit time left out)
  value      (M,) float32 ranking value of each
  why_*      explanation arrays for the first T of `order` (see ranking.py)

Files are written to ``*.partial`` and renamed, then the row is marked ready, so a
reader never sees half a file.  Readers cache per process, keyed by path and checksum.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings


def new_file(prefix: str, name: str) -> tuple[Path, str]:
    """(absolute path, path relative to DATA_DIR) of a fresh file in its own directory."""
    relative = f"anomalies/{prefix}-{uuid.uuid4().hex[:10]}"
    directory = Path(settings.DATA_DIR) / relative
    directory.mkdir(parents=True, exist_ok=False)
    return directory / name, f"{relative}/{name}"


@dataclass(frozen=True)
class ScoreArrays:
    ids: np.ndarray                 # (N,) int64 Galaxy ids, EmbeddingSet row order
    combined: np.ndarray            # (N,) float32 in [0, 1]
    scores: dict[str, np.ndarray]   # method -> (N,) raw
    ranks: dict[str, np.ndarray]    # method -> (N,) percentile in [0, 1]
    row_of: dict[int, int]          # Galaxy id -> row
    _orders: dict = field(default_factory=dict, repr=False, compare=False)

    def order(self, by: str = "combined") -> np.ndarray:
        """Galaxy ids from most to least anomalous by `combined` or one method (cached)."""
        if by not in self._orders:
            values = self.combined if by == "combined" else self.scores[by]
            # stable: equal scores keep catalogue order, so the queue never reshuffles by chance
            self._orders[by] = self.ids[np.argsort(-values, kind="stable")]
        return self._orders[by]


@lru_cache(maxsize=8)
def _load_scores(path: str, checksum: str) -> ScoreArrays:
    with np.load(Path(settings.DATA_DIR) / path) as data:
        methods = [k[len("score_"):] for k in data.files if k.startswith("score_")]
        ids = data["ids"]
        return ScoreArrays(ids=ids, combined=data["combined"],
                           scores={m: data[f"score_{m}"] for m in methods},
                           ranks={m: data[f"rank_{m}"] for m in methods},
                           row_of={int(g): i for i, g in enumerate(ids)})


def load_scores(score_set) -> ScoreArrays:
    """The score file of a ready ScoreSet (cached per process)."""
    if score_set.status != "ready" or not score_set.scores_path:
        raise ValueError(f"score set {score_set.pk} is {score_set.status}, not ready")
    return _load_scores(score_set.scores_path, score_set.checksum)


@lru_cache(maxsize=32)
def _load_ranking(path: str) -> dict[str, np.ndarray]:
    with np.load(Path(settings.DATA_DIR) / path) as data:
        return {k: data[k] for k in data.files}


def load_ranking(ranking) -> dict[str, np.ndarray]:
    """Arrays of a ready PersonalRanking (cached per process; each ranking has its own path)."""
    if ranking.status != "ready" or not ranking.ranking_path:
        raise ValueError(f"ranking {ranking.pk} is {ranking.status}, not ready")
    return _load_ranking(ranking.ranking_path)
