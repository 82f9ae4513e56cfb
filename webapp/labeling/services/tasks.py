"""Task helpers shared by pages, the JSON API and exports."""
from __future__ import annotations

from webapp.labeling.models import Task


def task_dict(task: Task) -> dict:
    """The public description of a task (GET /api/tasks/ and /api/tasks/<id>/)."""
    data = {
        "id": task.pk, "name": task.name, "kind": task.kind, "description": task.description,
        "classes": [{"index": i, "name": c["name"], "key": c.get("key") or ""} for i, c in enumerate(task.classes or [])],
        "allow_unsure": task.allow_unsure, "strategy": task.strategy, "batch_size": task.batch_size,
        "round_every": task.round_every, "votes_per_galaxy": task.votes_per_galaxy,
        "embedding_set_id": task.embedding_set_id,
        "surveys": sorted(s.slug for s in task.surveys.all()),
        "url": f"/tasks/{task.pk}/", "label_url": f"/tasks/{task.pk}/label/",
    }
    if not task.is_classification:
        data.update({"target": task.target_name, "unit": task.unit,
                     "range": [task.value_min, task.value_max]})
    return data


def tasks_for_embedding_set(embedding_set) -> list[Task]:
    return list(Task.objects.filter(embedding_set=embedding_set).prefetch_related("surveys"))
