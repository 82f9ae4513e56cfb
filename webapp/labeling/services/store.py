"""Files behind a task: its galaxies' embedding rows, trained heads and prediction arrays.

Layout under DATA_DIR/labeling/task<id>/round<n>-<uuid>/:
  model.npz        the head's arrays + its config as JSON (ml.heads state_dict)
  predictions.npz  galaxy_ids (N,), and classification: probs (N, K) float32,
                   members (M, N, K) float16 (for BALD); regression: mean (N,), sigma (N,)
  labels.npz       the training and validation labels this round used (reproducibility)
Every file is written to *.partial and renamed; a Round row points at files only
after they exist in full.
"""
from __future__ import annotations

import json
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.atomic import save_npz_atomic

from webapp.catalog.models import Galaxy
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

    galaxy_ids (N,) int64, rows (N,) row numbers in the set, survey_ids (N,) int64;
    ``vectors()`` gives (N, D) float32."""

    def __init__(self, es, galaxy_ids, rows, survey_ids):
        self.es, self.galaxy_ids, self.rows, self.survey_ids = es, galaxy_ids, rows, survey_ids
        self.position = {int(g): i for i, g in enumerate(galaxy_ids)}

    def __len__(self):
        return len(self.galaxy_ids)

    def vectors(self) -> np.ndarray:
        _, vectors, _ = load_embedding_set(self.es)
        return np.asarray(vectors[self.rows], dtype=np.float32)

    def positions(self, galaxy_ids) -> np.ndarray:
        """Positions of galaxies in this order; unknown ones are dropped."""
        return np.array([self.position[int(g)] for g in galaxy_ids if int(g) in self.position], dtype=np.int64)


def task_rows(task: Task) -> TaskRows:
    es = task.embedding_set
    survey_ids = tuple(sorted(task.surveys.values_list("pk", flat=True)))
    return _task_rows(es.pk, es.checksum, survey_ids, es)


@lru_cache(maxsize=8)
def _task_rows(es_pk, checksum, survey_ids, es) -> TaskRows:
    ids, _, _ = load_embedding_set(es)
    # every galaxy of the task's surveys (no giant IN list), then keep those in the set
    survey_of = dict(Galaxy.objects.filter(survey_id__in=survey_ids).values_list("pk", "survey_id")
                     .order_by()) if survey_ids else {}
    rows = np.array([i for i, g in enumerate(ids) if int(g) in survey_of], dtype=np.int64)
    galaxy_ids = np.asarray(ids[rows], dtype=np.int64)
    surveys = np.array([survey_of[int(g)] for g in galaxy_ids], dtype=np.int64)
    return TaskRows(es, galaxy_ids, rows, surveys)


# ------------------------------------------------------------------ predictions
def serving_round(task: Task) -> Round | None:
    """The newest ready round: its model and predictions are what people see."""
    return task.rounds.filter(status=ArtifactStatus.READY).order_by("-number").first()


@lru_cache(maxsize=8)
def _load_predictions(path: str) -> dict[str, np.ndarray]:
    with np.load(Path(settings.DATA_DIR) / path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_predictions(rnd: Round) -> dict[str, np.ndarray]:
    """The round's prediction arrays (cached per process; files never change once written)."""
    return _load_predictions(rnd.predictions_path)


def predictions_for(rnd: Round, galaxy_ids) -> dict[str, np.ndarray]:
    """The round's arrays re-ordered to galaxy_ids; rows it has no prediction for are NaN."""
    data = load_predictions(rnd)
    where = {int(g): i for i, g in enumerate(data["galaxy_ids"])}
    idx = np.array([where.get(int(g), -1) for g in galaxy_ids], dtype=np.int64)
    out = {}
    for key in ("probs", "mean", "sigma", "uncertainty"):
        if key in data:
            arr = data[key].astype(np.float32)
            filled = np.full((len(idx),) + arr.shape[1:], np.nan, dtype=np.float32)
            filled[idx >= 0] = arr[idx[idx >= 0]]
            out[key] = filled
    if "members" in data:
        m = data["members"]
        filled = np.full((m.shape[0], len(idx), m.shape[2]), np.nan, dtype=np.float32)
        filled[:, idx >= 0] = m[:, idx[idx >= 0]].astype(np.float32)
        out["members"] = filled
    return out
