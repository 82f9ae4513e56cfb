"""Score-set and personal-ranking arrays on disk (under DATA_DIR/anomalies/).

Score directory (one per ScoreSet; scores_path points at it): columnar .npy files,
memory-mapped, row order = the EmbeddingSet's ids.npy (id -> row: ml.idindex):
  combined.npy        (N,) float32 rank-normalised blend in [0, 1]
  score_<m>.npy       (N,) float32 raw score of method m (higher = more anomalous)
  rank_<m>.npy        (N,) float32 its percentile rank in [0, 1]
  order_<by>.npy      (N,) int64 Galaxy ids from most to least anomalous by "combined" or
                      one method, precomputed by the job (stable: ties keep catalogue order)
  meta.json           {"ids_path": the set's ids.npy, "methods": [...], "n": N}, written last
There are no per-galaxy score rows; pages read a few values by row.
(Score sets written before this layout are one scores.npz with the same arrays plus ids.)
Ranking directory (one per PersonalRanking; ranking_path points at its ranking.npz):
  order.npy    (M,) int64 Galaxy ids, best first (galaxies scored at fit time left out)
  value.npy    (M,) float32 ranking value of each
  ranking.npz  why_*: explanation arrays for the first T of `order` (see ranking.py), written last
order and value are memory-mapped like the score columns: a request reads the few entries it
shows, not M of them.  (Rankings written before this layout hold order and value inside the .npz.)

Files are written to ``*.partial`` and renamed, then the row is marked ready, so a
reader never sees half a file.  Readers cache per process, keyed by path and checksum.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.atomic import save_npy_atomic, sha256_file, write_atomic
from ml.idindex import IdIndex


def new_file(prefix: str, name: str) -> tuple[Path, str]:
    """(absolute path, path relative to DATA_DIR) of a fresh file (or directory) in its own directory."""
    relative = f"anomalies/{prefix}-{uuid.uuid4().hex[:10]}"
    directory = Path(settings.DATA_DIR) / relative
    directory.mkdir(parents=True, exist_ok=False)
    return directory / name, f"{relative}/{name}"


@dataclass(frozen=True)
class ScoreArrays:
    ids: np.ndarray                 # (N,) int64 Galaxy ids, EmbeddingSet row order (memmap)
    combined: np.ndarray            # (N,) float32 in [0, 1]
    scores: dict[str, np.ndarray]   # method -> (N,) raw
    ranks: dict[str, np.ndarray]    # method -> (N,) percentile in [0, 1]
    row_of: IdIndex                 # Galaxy id -> row (searchsorted, ml.idindex; no dict)
    directory: Path | None = None   # columnar layout: where the order_<by>.npy files are
    _orders: dict = field(default_factory=dict, repr=False, compare=False)

    def order(self, by: str = "combined") -> np.ndarray:
        """Galaxy ids from most to least anomalous by `combined` or one method (precomputed file)."""
        if by not in self._orders:
            path = self.directory / f"order_{by}.npy" if self.directory is not None else None
            if path is not None and path.exists():
                self._orders[by] = np.load(path, mmap_mode="r")
            else:                                    # legacy .npz score sets
                self._orders[by] = self.ids[order_rows(self.combined if by == "combined" else self.scores[by])]
        return self._orders[by]

    def values_at(self, galaxy_id) -> dict | None:
        """{"combined", "ranks", "scores"} of one galaxy (three reads by row), None if not in the set."""
        row = self.row_of.get(galaxy_id)
        if row is None:
            return None
        return {"combined": float(self.combined[row]),
                "ranks": {m: float(r[row]) for m, r in self.ranks.items()},
                "scores": {m: _finite(s[row]) for m, s in self.scores.items()}}


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def order_rows(values: np.ndarray) -> np.ndarray:
    """Rows from highest to lowest value; stable, so equal scores keep catalogue order."""
    return np.argsort(-np.asarray(values), kind="stable")


def write_scores(directory: Path, ids_path: str, combined: np.ndarray, scores: dict, ranks: dict,
                 ids: np.ndarray) -> str:
    """Write a score directory (module doc) atomically file by file, meta.json last; returns
    the sha256 of combined.npy (ScoreSet.checksum)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(directory / "combined.npy", np.asarray(combined, dtype=np.float32))
    for m in scores:
        save_npy_atomic(directory / f"score_{m}.npy", np.asarray(scores[m], dtype=np.float32))
        save_npy_atomic(directory / f"rank_{m}.npy", np.asarray(ranks[m], dtype=np.float32))
    for by, values in [("combined", combined), *scores.items()]:
        save_npy_atomic(directory / f"order_{by}.npy", np.asarray(ids, dtype=np.int64)[order_rows(values)])
    write_atomic(directory / "meta.json", json.dumps({"ids_path": ids_path, "methods": list(scores),
                                                       "n": int(len(combined))}))
    return sha256_file(directory / "combined.npy")


@lru_cache(maxsize=8)
def _load_scores(path: str, checksum: str) -> ScoreArrays:
    root = Path(settings.DATA_DIR)
    if path.endswith(".npz"):
        with np.load(root / path) as data:
            methods = [k[len("score_"):] for k in data.files if k.startswith("score_")]
            ids = data["ids"]
            return ScoreArrays(ids=ids, combined=data["combined"],
                               scores={m: data[f"score_{m}"] for m in methods},
                               ranks={m: data[f"rank_{m}"] for m in methods},
                               row_of=IdIndex.build(ids))
    directory = root / path
    meta = json.loads((directory / "meta.json").read_text())
    load = lambda name: np.load(directory / f"{name}.npy", mmap_mode="r")  # noqa: E731
    return ScoreArrays(ids=np.load(root / meta["ids_path"], mmap_mode="r"), combined=load("combined"),
                       scores={m: load(f"score_{m}") for m in meta["methods"]},
                       ranks={m: load(f"rank_{m}") for m in meta["methods"]},
                       row_of=IdIndex.for_ids_file(root / meta["ids_path"]), directory=directory)


def load_scores(score_set) -> ScoreArrays:
    """The score files of a ready ScoreSet (memory-mapped, cached per process)."""
    if score_set.status != "ready" or not score_set.scores_path:
        raise ValueError(f"score set {score_set.pk} is {score_set.status}, not ready")
    return _load_scores(score_set.scores_path, score_set.checksum)


RANKING_COLUMNS = ("order", "value")   # (M,) arrays of a ranking, .npy files beside ranking.npz


@lru_cache(maxsize=32)
def _load_ranking(path: str) -> dict[str, np.ndarray]:
    full = Path(settings.DATA_DIR) / path
    with np.load(full) as data:
        arrays = {k: data[k] for k in data.files}       # the why_* arrays: T rows at most
    for name in RANKING_COLUMNS:
        if name not in arrays:                          # else an older ranking: all in the .npz
            arrays[name] = np.load(full.parent / f"{name}.npy", mmap_mode="r")
    return arrays


def load_ranking(ranking) -> dict[str, np.ndarray]:
    """Arrays of a ready PersonalRanking (cached per process; each ranking has its own path)."""
    if ranking.status != "ready" or not ranking.ranking_path:
        raise ValueError(f"ranking {ranking.pk} is {ranking.status}, not ready")
    return _load_ranking(ranking.ranking_path)
