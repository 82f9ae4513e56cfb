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
    set's rows (NaN / None where the task has no prediction, e.g. other surveys)."""
    layers = []
    tasks = tasks_for_embedding_set(embedding_set)
    if not tasks:
        return layers
    ids, _, _ = load_embedding_set(embedding_set)
    for task in tasks:
        rnd = serving_round(task)
        if rnd is None:
            continue
        data = load_predictions(rnd)
        where = {int(g): i for i, g in enumerate(data["galaxy_ids"])}
        idx = np.array([where.get(int(g), -1) for g in ids], dtype=np.int64)
        ok = idx >= 0
        meta = {"task_id": task.pk, "round": rnd.number, "model_version": rnd.model_version}
        unc = np.full(len(ids), np.nan, dtype=np.float32)
        unc[ok] = data["uncertainty"][idx[ok]]
        if task.is_classification:
            names = task.class_names
            best = data["probs"].argmax(axis=1)
            values = [names[best[i]] if i >= 0 else None for i in idx]
            layers.append(ColourLayer(f"prediction:{task.pk}", f"{task.name}: predicted class (round {rnd.number})",
                                      "categorical", values, group="Predictions", meta={**meta, "classes": names}))
            layers.append(ColourLayer(f"uncertainty:{task.pk}", f"{task.name}: uncertainty (entropy)", "numeric",
                                      unc, group="Predictions", unit="nats", meta=meta))
        else:
            mean = np.full(len(ids), np.nan, dtype=np.float32)
            mean[ok] = data["mean"][idx[ok]]
            layers.append(ColourLayer(f"prediction:{task.pk}", f"{task.name}: predicted {task.target_name}",
                                      "numeric", mean, group="Predictions", unit=task.unit, meta=meta))
            layers.append(ColourLayer(f"uncertainty:{task.pk}", f"{task.name}: uncertainty (σ)", "numeric",
                                      unc, group="Predictions", unit=task.unit, meta=meta))
    return layers
