"""Files behind a task: its galaxies' embedding rows, trained heads and prediction arrays.

Layout under DATA_DIR/labeling/task<id>/round<n>-<uuid>/:
  model.npz        the head's arrays + its config as JSON (ml.heads state_dict)
  predictions/     columnar prediction files addressed by the embedding set's row
                   (see PredictionWriter below); no per-galaxy database rows
  labels.npz       the training and validation labels this round used (reproducibility)
Every file is written to *.partial and renamed; a Round row points at files only
after they exist in full.
"""
from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.atomic import atomic_path, save_npz_atomic, write_atomic
from ml.idindex import IdIndex

from webapp.embeddings.models import ArtifactStatus
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.labeling.models import Round, Task


def new_round_dir(task: Task, number: int) -> tuple[Path, str]:
    relative = f"labeling/task{task.pk}/round{number}-{uuid.uuid4().hex[:8]}"
    absolute = Path(settings.DATA_DIR) / relative
    absolute.mkdir(parents=True, exist_ok=False)
    return absolute, relative


def save_head(path: Path, state: dict) -> str:
    """A head's state_dict -> model.npz (arrays as arrays, the rest as one JSON string)."""
    meta = {k: v for k, v in state.items() if k != "arrays"}
    arrays = {f"a_{k}": np.asarray(v) for k, v in state["arrays"].items()}
    return save_npz_atomic(path, meta=np.array(json.dumps(meta)), **arrays)


def load_head(path: Path):
    """model.npz -> ml.heads.Head or RegHead."""
    from ml.heads import Head, RegHead

    with np.load(path, allow_pickle=False) as data:
        state = json.loads(str(data["meta"]))
        state["arrays"] = {k[2:]: data[k] for k in data.files if k.startswith("a_")}
    return Head.from_state(state) if state["task"] == "classification" else RegHead.from_state(state)


# ------------------------------------------------------------------ the task's galaxies
class TaskRows:
    """The task's galaxies inside its EmbeddingSet, in embedding row order.

    rows (N,) int64 ascending row numbers in the set, galaxy_ids (N,) int64, survey_ids
    (N,) int64; ``vectors()`` gives a lazy (N, D) float32 view (TaskVectors).  Galaxy id -> position goes through
    the set's id index (ml.idindex, searchsorted on memory maps): no dict is built."""

    def __init__(self, es, rows, survey_ids):
        ids, _, self.index = load_embedding_set(es)
        self.es, self.rows, self.survey_ids = es, np.asarray(rows, dtype=np.int64), survey_ids
        self.galaxy_ids = np.asarray(ids[self.rows], dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    def vectors(self) -> "TaskVectors":
        """(N, D) float32 rows of the task's galaxies, read on demand from the memory map."""
        _, vectors, _ = load_embedding_set(self.es)
        return TaskVectors(vectors, self.rows)

    def positions(self, galaxy_ids) -> np.ndarray:
        """Positions of galaxies in this order (input order kept); unknown ones are dropped."""
        es_rows = self.index.rows(galaxy_ids)
        es_rows = es_rows[es_rows >= 0]
        if len(self.rows) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.rows, es_rows), len(self.rows) - 1)
        return pos[self.rows[pos] == es_rows].astype(np.int64)


class TaskVectors:
    """Lazy (N, D) float32 view of a task's rows in the set's memory-mapped vectors.

    ``view[positions]`` reads just those rows (positions into the task's order), so a round
    on 10^7 galaxies never holds the N x D copy (5 GB at D=128) that np.asarray would make;
    heads take their standardisation statistics from a sample (ml.heads.stats_sample)."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray):
        self._vectors, self._rows = vectors, rows
        self.shape = (len(rows), vectors.shape[1])
        self.dtype = np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, positions) -> np.ndarray:
        if isinstance(positions, tuple):                  # view[rows, columns]
            return self[positions[0]][(slice(None),) * (np.ndim(positions[0]) > 0 or isinstance(
                positions[0], slice)) + positions[1:]]
        if isinstance(positions, (int, np.integer)):
            return np.asarray(self._vectors[self._rows[positions]], dtype=np.float32)
        if isinstance(positions, slice):
            return np.asarray(self._vectors[self._rows[positions]], dtype=np.float32)
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        rows = self._rows[positions]
        order = np.argsort(rows, kind="stable")          # read the memory map in file order
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        out[order] = self._vectors[rows[order]]
        return out

    def __array__(self, dtype=None, copy=None):         # np.asarray(view): the whole copy, on purpose only
        whole = np.asarray(self._vectors[self._rows], dtype=np.float32)
        return whole if dtype is None else whole.astype(dtype)


def task_rows(task: Task) -> TaskRows:
    es = task.embedding_set
    survey_ids = tuple(sorted(task.surveys.values_list("pk", flat=True)))
    from webapp.embeddings.services.sky import catalogue_signature
    return _task_rows(es.pk, es.checksum, survey_ids, catalogue_signature(es), es)


@lru_cache(maxsize=8)
def _task_rows(es_pk, checksum, survey_ids, signature, es) -> TaskRows:
    # the survey of each row comes from the set's cached catalogue file (sky.sky_index),
    # so no query reads every galaxy and no per-galaxy Python object is made
    from webapp.embeddings.services.sky import sky_index
    survey_of_row = sky_index(es).survey                                # (N_set,) int64, -1 = gone
    rows = np.flatnonzero(np.isin(survey_of_row, np.array(survey_ids, dtype=np.int64))).astype(np.int64)
    return TaskRows(es, rows, np.asarray(survey_of_row[rows], dtype=np.int64))


# ------------------------------------------------------------------ predictions
def serving_round(task: Task) -> Round | None:
    """The newest ready round: its model and predictions are what people see."""
    return task.rounds.filter(status=ArtifactStatus.READY).order_by("-number").first()


# Columnar prediction files of a round: one directory, predictions_path points at it.
#   meta.json        {"embedding_set": pk, "ids_path": the set's ids.npy, "n": rows of the set}
#   probs.npy        (N_set, K) float32 class probabilities (classification)
#   uncertainty.npy  (N_set,) float32 entropy in nats, or sigma (regression)
#   members.npy      (N_set, M, K) float16 ensemble members' probabilities (BALD), when M > 1
#   mean.npy, sigma.npy  (N_set,) float32 (regression)
# Rows are the embedding set's rows (ids.npy order); rows outside the task are NaN.
# Every file is written to a partial file and renamed (ml.atomic), meta.json last.
PREDICTION_KEYS = ("probs", "uncertainty", "members", "mean", "sigma")
FILL_BLOCK = 1 << 20          # rows initialised to NaN per step


class PredictionWriter:
    """Fill (N_set, ...) prediction columns block by block; publish them on exit."""

    def __init__(self, directory: Path, es):
        self.directory, self.es, self.n = Path(directory), es, int(es.n)
        self._stack, self._maps = ExitStack(), {}

    def __enter__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stack.__enter__()
        return self

    def put(self, key: str, rows: np.ndarray, values: np.ndarray) -> None:
        """values (B, ...) for set rows (B,)."""
        if key not in PREDICTION_KEYS:
            raise ValueError(f"unknown prediction column {key!r}")
        column = self._maps.get(key)
        if column is None:
            dtype = np.float16 if key == "members" else np.float32
            partial = self._stack.enter_context(atomic_path(self.directory / f"{key}.npy"))
            column = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(self.n, *values.shape[1:]))
            for start in range(0, self.n, FILL_BLOCK):
                column[start:start + FILL_BLOCK] = np.nan
            self._maps[key] = column
        column[rows] = values

    def __exit__(self, exc_type, exc, tb):
        for column in self._maps.values():
            column.flush()
        self._maps.clear()
        self._stack.__exit__(exc_type, exc, tb)          # renames the columns (or removes the partials)
        if exc_type is None:
            write_atomic(self.directory / "meta.json", json.dumps(
                {"embedding_set": self.es.pk, "ids_path": self.es.ids_path, "n": self.n}))
        return False


class RoundPredictions:
    """A round's predictions: ``index`` (id -> row, ml.idindex) and columns addressed by row."""

    def __init__(self, index: IdIndex, columns: dict[str, np.ndarray], ids_path: str | None = None):
        self.index, self.columns = index, columns
        self.ids_path = ids_path          # the embedding set's ids.npy the rows follow (None: legacy file)

    def __contains__(self, key):
        return key in self.columns

    def __getitem__(self, key) -> np.ndarray:
        return self.columns[key]


@lru_cache(maxsize=16)
def _open_predictions(path: str) -> RoundPredictions:
    root = Path(settings.DATA_DIR)
    if path.endswith(".npz"):                        # rounds written before the columnar layout
        with np.load(root / path, allow_pickle=False) as data:
            columns = {k: data[k] for k in data.files if k != "galaxy_ids"}
            index = IdIndex.build(data["galaxy_ids"])
        if "members" in columns:
            columns["members"] = np.ascontiguousarray(columns["members"].transpose(1, 0, 2))
        return RoundPredictions(index, columns)
    directory = root / path
    meta = json.loads((directory / "meta.json").read_text())
    columns = {k: np.load(directory / f"{k}.npy", mmap_mode="r")
               for k in PREDICTION_KEYS if (directory / f"{k}.npy").exists()}
    return RoundPredictions(IdIndex.for_ids_file(root / meta["ids_path"]), columns, meta["ids_path"])


def load_predictions(rnd: Round) -> RoundPredictions:
    """The round's prediction columns (memory-mapped, cached per process; files never change)."""
    if not rnd.predictions_path:
        raise ValueError(f"round {rnd.number} has no predictions (pruned or not ready)")
    return _open_predictions(rnd.predictions_path)


def predictions_for(rnd: Round, galaxy_ids) -> dict[str, np.ndarray]:
    """The round's values for these galaxies (input order); galaxies it has no prediction
    for are NaN.  Reads only those rows: O(len(galaxy_ids) log N)."""
    data = load_predictions(rnd)
    idx = data.index.rows(galaxy_ids)
    ok = idx >= 0
    out = {}
    for key in ("probs", "mean", "sigma", "uncertainty", "members"):
        if key in data:
            arr = data[key]
            filled = np.full((len(idx),) + arr.shape[1:], np.nan, dtype=np.float32)
            filled[ok] = arr[idx[ok]]
            out[key] = filled
    if "members" in out:
        out["members"] = np.ascontiguousarray(out["members"].transpose(1, 0, 2))    # (M, n, K)
    return out
