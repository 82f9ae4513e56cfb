"""Ask the task's query strategy (ml.active) which galaxies to label next, and why.

Inputs: the task's galaxies in its EmbeddingSet (store.task_rows), the serving round's
stored predictions (probabilities, ensemble members for BALD, or a regression sigma),
and the galaxies already queued or labelled (never picked twice).

With a model, the candidate pool is bounded: the CANDIDATES most uncertain galaxies by the
round's stored uncertainty column (entropy or sigma), found in one streaming top-K pass;
the strategy (margin, BALD, diverse, ...) then ranks only those.

Before a model is worth trusting (fewer than ``task.cold_start_labels`` labelled
galaxies, or no ready round yet) the picks are diverse seeds: k-means centroids for
the very first batch, then core-set (farthest from everything picked so far), because
k-means with the same k would point at the same centroids again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.active import MODEL_FREE, query
from ml.topk import top_k_stream
from webapp.embeddings.models import ArtifactStatus
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services.store import load_predictions, predictions_for, serving_round, task_rows

CANDIDATES = 20_000   # uncertainty strategies rank at most this many most-uncertain galaxies (bounded pool)

STRATEGY_LABELS = {
    "random": "Random (baseline)",
    "least_confidence": "Least confidence",
    "margin": "Margin (smallest gap between the top two classes)",
    "entropy": "Entropy",
    "bald": "BALD (ensemble disagreement)",
    "diverse": "Diverse batch (cluster-margin: most uncertain of each k-means cluster)",
    "coreset": "Core-set (greedy k-center, no model)",
    "cold_start": "Cold start (k-means centroids, no model)",
}
STRATEGY_CHOICES = [(k, v) for k, v in STRATEGY_LABELS.items()]


@dataclass(frozen=True)
class Pick:
    galaxy_id: int
    source: str
    strategy: str
    reason: str
    round_number: int | None


def labelled_count(task: Task) -> int:
    """Galaxies with at least one value label (ignoring undo subtleties: a count for gating)."""
    return Label.objects.filter(task=task, kind=Label.Kind.VALUE).values("galaxy_id").distinct().count()


class QueueUnavailable(RuntimeError):
    """The strategy cannot pick yet (e.g. the embeddings are still being computed)."""


def pick_next(task: Task, batch: int) -> list[Pick]:
    """Up to ``batch`` new galaxies for the queue, most informative first."""
    es = task.embedding_set
    if es.status != ArtifactStatus.READY:
        raise QueueUnavailable(f"the task's embedding set “{es}” is {es.status}; the model can pick "
                               "galaxies once it is ready (galaxies sent from the map can be labelled now)")
    rows = task_rows(task)
    pool = np.arange(len(rows))
    if task.queue_survey_id:
        pool = pool[rows.survey_ids == task.queue_survey_id]
    if len(pool) == 0:
        return []
    excluded = rows.positions(excluded_galaxies(task))
    pool, taken = _bounded_pool(task, rows, pool, excluded)
    if len(taken) >= len(pool):
        return []
    _, vectors, _ = load_embedding_set(rows.es)
    x = np.asarray(vectors[rows.rows[pool]], dtype=np.float32)         # (P, D), P bounded when a model ranks
    strategy, probs, rnd, note = _strategy_inputs(task, rows.galaxy_ids[pool], len(taken))
    seed = int(task.pk * 7919 + QueueItem.objects.filter(task=task).count())
    idx, reasons = query(strategy, x, probs, taken, batch, seed=seed)
    source = QueueItem.Source.COLD_START if strategy in ("cold_start", "coreset") and note else QueueItem.Source.STRATEGY
    round_number = rnd.number if rnd is not None else None
    return [Pick(int(rows.galaxy_ids[pool[i]]), source, strategy, f"{why}{note}", round_number)
            for i, why in zip(idx, reasons)]


def _bounded_pool(task: Task, rows, pool: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool positions, positions inside pool already taken).  With a serving model and an
    uncertainty strategy, the pool is the CANDIDATES most uncertain untaken galaxies, found in
    one streaming pass over the round's uncertainty column (ml.topk): memory O(CANDIDATES)."""
    in_pool_taken = np.flatnonzero(np.isin(pool, excluded))
    if task.strategy in MODEL_FREE or task.strategy == "cold_start" or len(pool) <= CANDIDATES:
        return pool, in_pool_taken
    rnd = serving_round(task)
    if rnd is None or not rnd.predictions_path or labelled_count(task) < task.cold_start_labels:
        return pool, in_pool_taken
    data = load_predictions(rnd)
    if data.ids_path != rows.es.ids_path:          # round predicted another set's rows: no shortcut
        return pool, in_pool_taken
    taken_mask = np.zeros(len(pool), dtype=bool)
    taken_mask[in_pool_taken] = True
    best = top_k_stream(data["uncertainty"], CANDIDATES, rows=rows.rows[pool], exclude=taken_mask)
    if len(best) == 0:
        return pool, in_pool_taken
    return pool[np.sort(best)], np.zeros(0, dtype=np.int64)


def excluded_galaxies(task: Task) -> np.ndarray:
    """Galaxies a strategy must not pick again: queued (done or not) or labelled by anyone."""
    queued = QueueItem.objects.filter(task=task).values_list("galaxy_id", flat=True)
    labelled = Label.objects.filter(task=task).exclude(kind=Label.Kind.UNDO).values_list("galaxy_id", flat=True)
    return np.unique(np.fromiter(list(queued) + list(labelled), dtype=np.int64))


def _strategy_inputs(task: Task, pool_ids: np.ndarray, n_taken: int):
    """(strategy, probs or None, serving round or None, note appended to reasons)."""
    rnd = serving_round(task)
    if task.strategy in MODEL_FREE and task.strategy != "cold_start":
        return task.strategy, None, rnd, ""
    if rnd is None or labelled_count(task) < task.cold_start_labels or task.strategy == "cold_start":
        strategy = "cold_start" if n_taken == 0 else "coreset"
        why = "no model yet" if rnd is None else f"fewer than {task.cold_start_labels} labelled galaxies"
        return strategy, None, rnd, f" · cold start ({why})"
    preds = predictions_for(rnd, pool_ids)
    note = f" · round {rnd.number} model"
    if not task.is_classification:
        sigma = np.nan_to_num(preds["sigma"], nan=0.0)
        return task.strategy, sigma, rnd, note
    strategy = task.strategy
    if strategy == "bald":
        members = preds.get("members")
        if members is None or members.shape[0] < 2:
            return "entropy", _clean(preds["probs"]), rnd, note + " (BALD needs an ensemble head; used entropy)"
        return strategy, _clean(members), rnd, note
    return strategy, _clean(preds["probs"]), rnd, note


def _clean(probs: np.ndarray) -> np.ndarray:
    """Rows without a prediction (NaN) become confident one-hot rows: never picked first."""
    probs = np.array(probs, dtype=np.float32)
    missing = ~np.isfinite(probs).all(axis=-1)
    probs[missing] = 0.0
    probs[..., 0][missing] = 1.0
    return probs
