"""The labeling queue: which galaxies a person sees next, in which order, and why.

* ``enqueue_galaxies(task, ids, user)`` puts hand-picked galaxies (the map's lasso,
  "send to labeling task") in front of everything, keeping their order.
* ``next_items(task, user, n)`` hands out the next n galaxies for one person: not yet
  answered by them, not done (``task.votes_per_galaxy`` answers), not leased to someone
  else.  Items are leased for LEASE_SECONDS so two labellers of a one-vote task do not
  label the same galaxy; a lease ends when the galaxy is answered or expires.
* When a person runs out, ``refill(task)`` asks the task's query strategy (ml.active)
  for the next batch using the serving round's stored predictions, or k-means seeds
  (cold start) before there is a model.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services.labels import task_answers
from webapp.labeling.services.picking import QueueUnavailable, pick_next

log = logging.getLogger(__name__)
LEASE_SECONDS = 600       # a prefetched galaxy stays reserved for its person this long
MAX_ENQUEUE = 5000        # one lasso may send at most this many galaxies
SCAN_CHUNK = 200          # queue rows read per step while skipping answered galaxies


def enqueue_galaxies(task: Task, galaxy_ids, user) -> int:
    """Put these galaxies at the front of the task's queue, in the given order.

    Galaxies outside the task's surveys (or unknown ids) are ignored; galaxies already
    queued move to the front (and count).  Returns how many galaxies are now at the front.
    """
    ids = _unique_ints(galaxy_ids)[:MAX_ENQUEUE]
    valid = set(Galaxy.objects.filter(pk__in=ids, survey__in=task.surveys.all()).values_list("pk", flat=True))
    ids = [g for g in ids if g in valid]
    if not ids:
        return 0
    who = getattr(user, "username", "") or "someone"
    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).first()   # serialise rank arithmetic
        low = QueueItem.objects.filter(task=task).aggregate(m=Min("rank"))["m"]
        start = min(low if low is not None else 0.0, 0.0) - len(ids)
        existing = {q.galaxy_id: q for q in QueueItem.objects.filter(task=task, galaxy_id__in=ids)}
        reason = f"sent to this task by {who}"
        new = []
        for i, gid in enumerate(ids):
            fields = dict(rank=start + i, source=QueueItem.Source.MANUAL, strategy="", reason=reason,
                          added_by=user if getattr(user, "is_authenticated", False) else None)
            if gid in existing:
                QueueItem.objects.filter(pk=existing[gid].pk).update(**fields)
            else:
                new.append(QueueItem(task=task, galaxy_id=gid, **fields))
        QueueItem.objects.bulk_create(new, ignore_conflicts=True)
    return len(ids)


def _unique_ints(values) -> list[int]:
    out, seen = [], set()
    for v in values:
        try:
            i = int(v)
        except (TypeError, ValueError):
            raise ValueError(f"galaxy ids must be integers, got {v!r}") from None
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def answered_galaxies(task: Task, user) -> set[int]:
    """Galaxies this person currently has an answer (value, unsure or skip) for."""
    return {g for (g, _), _a in task_answers(task, user=user).items()}


def next_items(task: Task, user, n: int = 10, exclude=(), refill_when_empty: bool = True) -> list[QueueItem]:
    """Up to n queue items for this person, leased to them; refills from the strategy when dry."""
    items = _claim(task, user, n, set(exclude))
    if len(items) < n and refill_when_empty:
        try:
            added = refill(task)
        except QueueUnavailable:
            if items:          # hand-picked galaxies can still be labelled
                return items
            raise
        if added:
            items += _claim(task, user, n - len(items), set(exclude) | {q.galaxy_id for q in items})
    return items


def _claim(task: Task, user, n: int, exclude: set[int]) -> list[QueueItem]:
    now = timezone.now()
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now) | Q(leased_by=user)
    skip = answered_galaxies(task, user) | exclude
    picked: list[QueueItem] = []
    last_rank, last_id = None, None
    while len(picked) < n:
        qs = QueueItem.objects.filter(task=task, done=False).filter(free).order_by("rank", "id")
        if last_rank is not None:
            qs = qs.filter(Q(rank__gt=last_rank) | Q(rank=last_rank, id__gt=last_id))
        chunk = list(qs[:SCAN_CHUNK])
        if not chunk:
            break
        last_rank, last_id = chunk[-1].rank, chunk[-1].id
        for item in chunk:
            if item.galaxy_id in skip or len(picked) >= n:
                continue
            if _lease(item, user, now):
                picked.append(item)
    return picked


def _lease(item: QueueItem, user, now) -> bool:
    """Atomically reserve the item for this person (False if someone else got it first)."""
    if item.task.votes_per_galaxy > 1:
        return True   # several people are meant to see it: no exclusive lease
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now) | Q(leased_by=user)
    until = now + timedelta(seconds=LEASE_SECONDS)
    changed = QueueItem.objects.filter(pk=item.pk, done=False).filter(free).update(leased_by=user, leased_until=until)
    return bool(changed)


def release_leases(task: Task, user) -> int:
    """Give back every galaxy leased to this person (they left the page)."""
    return QueueItem.objects.filter(task=task, leased_by=user, done=False).update(leased_by=None, leased_until=None)


def remaining(task: Task) -> int:
    """Queued galaxies not done yet (for the page's counter)."""
    return QueueItem.objects.filter(task=task, done=False).count()


# ------------------------------------------------------------------ refilling from the strategy
def refill(task: Task, batch: int | None = None, replace_pending: bool = False, round_number=None) -> int:
    """Append the strategy's next batch to the queue; returns how many galaxies were added.

    replace_pending: drop strategy picks nobody has answered yet first (a new model makes
    them stale); hand-picked galaxies always stay.
    """
    batch = batch or task.batch_size
    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).first()   # one refill at a time per task
        if replace_pending:
            _drop_stale_picks(task)
        # A concurrent refill that won the lock has queued its batch already; ours excludes
        # those galaxies (picking.excluded_galaxies), so two refills add two distinct batches.
        picks = pick_next(task, batch)
        if not picks:
            return 0
        high = QueueItem.objects.filter(task=task).aggregate(m=Max("rank"))["m"]
        start = (high if high is not None else 0.0) + 1.0
        rows = [QueueItem(task=task, galaxy_id=p.galaxy_id, rank=start + i, source=p.source,
                          strategy=p.strategy, reason=p.reason[:300], round_number=round_number or p.round_number)
                for i, p in enumerate(picks)]
        QueueItem.objects.bulk_create(rows, ignore_conflicts=True)
    log.info("task %s: queued %d galaxies (%s)", task.pk, len(rows), picks[0].strategy)
    return len(rows)


def _drop_stale_picks(task: Task) -> int:
    answered = Label.objects.filter(task=task).values("galaxy_id")
    stale = QueueItem.objects.filter(task=task, done=False).exclude(source=QueueItem.Source.MANUAL) \
        .exclude(galaxy_id__in=answered)
    deleted, _ = stale.delete()
    return deleted
