"""Map colour layers from the labeling app: each task's prediction and its uncertainty."""
from __future__ import annotations

import numpy as np

from webapp.embeddings.services.colours import ColourLayer
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.labeling.services.store import load_predictions, serving_round
from webapp.labeling.services.tasks import tasks_for_embedding_set


def prediction_layers(embedding_set) -> list[ColourLayer]:
    """Per task on this embedding set with a ready round: "prediction:<id>" (class names, or
    the regression mean) and "uncertainty:<id>" (entropy in nats, or sigma), aligned with the
    set's rows (NaN / None where the task has no prediction, e.g. other surveys).  Values are
    computed only when someone colours the map by the layer."""
    layers = []
    for task in tasks_for_embedding_set(embedding_set):
        rnd = serving_round(task)
        if rnd is None:
            continue
        meta = {"task_id": task.pk, "round": rnd.number, "model_version": rnd.model_version}
        aligned = _Aligned(embedding_set, rnd)
        if task.is_classification:
            names = task.class_names
            layers.append(ColourLayer(f"prediction:{task.pk}", f"{task.name}: predicted class (round {rnd.number})",
                                      "categorical", lambda a=aligned, n=names: a.classes(n), group="Predictions",
                                      meta={**meta, "classes": names}))
            layers.append(ColourLayer(f"uncertainty:{task.pk}", f"{task.name}: uncertainty (entropy)", "numeric",
                                      lambda a=aligned: a.array("uncertainty"), group="Predictions", unit="nats",
                                      meta=meta))
        else:
            layers.append(ColourLayer(f"prediction:{task.pk}", f"{task.name}: predicted {task.target_name}",
                                      "numeric", lambda a=aligned: a.array("mean"), group="Predictions",
                                      unit=task.unit, meta=meta))
            layers.append(ColourLayer(f"uncertainty:{task.pk}", f"{task.name}: uncertainty (σ)", "numeric",
                                      lambda a=aligned: a.array("sigma"), group="Predictions", unit=task.unit,
                                      meta=meta))
    return layers


class _Aligned:
    """A round's prediction columns on the embedding set's rows (ml.idindex; no dict)."""

    def __init__(self, embedding_set, rnd):
        self.embedding_set, self.rnd, self._idx = embedding_set, rnd, None

    def index(self) -> np.ndarray | None:
        """Row of the round's columns for each row of the set; None when they are the same rows."""
        if self._idx is None:
            ids, _, _ = load_embedding_set(self.embedding_set)
            data = load_predictions(self.rnd)
            same = data.ids_path == self.embedding_set.ids_path          # columns already on these rows
            self._idx = False if same else data.index.rows(ids)
        return None if self._idx is False else self._idx

    def array(self, key: str) -> np.ndarray:
        column, idx = load_predictions(self.rnd)[key], self.index()
        if idx is None:
            return np.asarray(column, dtype=np.float32)
        out = np.full(len(idx), np.nan, dtype=np.float32)
        out[idx >= 0] = column[idx[idx >= 0]]
        return out

    def classes(self, names: list[str]) -> list[str | None]:
        probs = load_predictions(self.rnd)["probs"]
        idx = self.index()
        rows = np.arange(len(probs)) if idx is None else idx
        out: list[str | None] = [None] * len(rows)
        for start in range(0, len(rows), 1 << 16):                       # blockwise argmax
            chunk = rows[start:start + (1 << 16)]
            ok = chunk >= 0
            block = np.asarray(probs[chunk[ok]], dtype=np.float32)
            has = np.isfinite(block).all(axis=1)
            best = np.where(has, np.nan_to_num(block).argmax(axis=1), -1)
            for j, b in zip(np.flatnonzero(ok).tolist(), best.tolist()):
                if b >= 0:
                    out[start + j] = names[b]
        return out
