"""Counters for the task list, the task page and the labeling page."""
from __future__ import annotations

from django.db.models import Count, Q

from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services.labels import ANSWER_KINDS, answer_counts
from webapp.labeling.services.store import serving_round


def round_progress(task: Task) -> dict:
    """How far the labels are towards the next automatic round (the labeling page's counter)."""
    total = Label.objects.filter(task=task, kind=Label.Kind.VALUE).count()
    since = max(total - task.labels_at_last_trigger, 0)
    rnd = serving_round(task)
    from webapp.labeling.services.rounds import active_round
    training = active_round(task)
    from webapp.labeling.services.rounds import auto_round_wait
    due = bool(task.round_every) and since >= task.round_every and training is None
    return {"labels_total": total, "training_round": training.number if training else None, "since_last_round": since, "round_every": task.round_every,
            # seconds until the due automatic round may start (at most one per AUTO_ROUND_MIN_SECONDS)
            "auto_round_wait_s": round(auto_round_wait(task)) if due else 0,
            "next_round": (rnd.number + 1) if rnd else 1,
            "remaining_in_round": max(task.round_every - since, 0) if task.round_every else None,
            "queue_remaining": QueueItem.objects.filter(task=task, done=False).count()}


def user_progress(task: Task, user) -> dict:
    """The person's answered (value or unsure) and skipped galaxies, counted in SQL (one query)."""
    counts = answer_counts(task, user)
    return {"answered": sum(counts.get(k, 0) for k in ANSWER_KINDS), "skipped": counts.get(Label.Kind.SKIP, 0)}


def task_summaries(tasks) -> dict[int, dict]:
    """{task id: {"labels", "labellers", "rounds"}} for many tasks in three queries."""
    ids = [t.pk for t in tasks]
    labels = dict(Label.objects.filter(task_id__in=ids, kind=Label.Kind.VALUE).values("task_id")
                  .annotate(n=Count("id")).values_list("task_id", "n"))
    people = dict(Label.objects.filter(task_id__in=ids, kind=Label.Kind.VALUE).values("task_id")
                  .annotate(n=Count("user_id", distinct=True)).values_list("task_id", "n"))
    from webapp.labeling.models import Round
    rounds = dict(Round.objects.filter(task_id__in=ids).values("task_id")
                  .annotate(n=Count("id", filter=Q(status="ready"))).values_list("task_id", "n"))
    latest = {}
    for r in Round.objects.filter(task_id__in=ids, status="ready").order_by("task_id", "-number"):
        latest.setdefault(r.task_id, r)
    return {t: {"labels": labels.get(t, 0), "labellers": people.get(t, 0), "rounds": rounds.get(t, 0),
                "latest": latest.get(t)} for t in ids}
