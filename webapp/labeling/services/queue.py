"""The labeling queue: which galaxies a person sees next, in which order, and why.

* ``enqueue_galaxies(task, ids, user)`` puts hand-picked galaxies (the map's lasso,
  "send to labeling task") in front of everything, keeping their order.
* ``next_items(task, user, n)`` hands out the next n galaxies for one person: not yet
  answered by them, not done (``task.votes_per_galaxy`` answers), not leased to someone
  else.  Items are leased for LEASE_SECONDS so two labellers of a one-vote task do not
  label the same galaxy; a lease ends when the galaxy is answered or expires.
* When the queue runs low (fewer than ``task.batch_size`` galaxies left, or not enough
  for this person), ``next_items`` queues ONE ``label_refill`` job per task
  (``request_refill``, deduplicated while one is pending) and returns what is there: the
  strategy never runs inside a web request.  The job runs ``refill(task, refill_size(task))``:
  the task's query strategy (ml.active) picks the next batch from the serving round's
  columnar predictions, or k-means seeds (cold start) before there is a model.
* A refill adds ``task.batch_size`` galaxies, or more when many people label at once: enough
  for REFILL_REQUESTS_PER_LABELLER page requests of each person holding a lease.  With a fixed
  batch of 20 and 50 people asking for 10 each, the queue ran dry after every refill, most
  "next" requests came back empty and the worker re-ran the strategy back to back
  (issue 16's load test: 584 "next" requests for 244 labels).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services import prerender
from webapp.labeling.services.labels import task_answers
from webapp.embeddings.models import ArtifactStatus
from webapp.labeling.services.picking import QueueUnavailable, pick_next

log = logging.getLogger(__name__)
LEASE_SECONDS = 600       # a prefetched galaxy stays reserved for its person this long
MAX_ENQUEUE = 5000        # one lasso may send at most this many galaxies
SCAN_CHUNK = 200          # queue rows read per step while skipping answered galaxies
PAGE_REQUEST = 10         # galaxies static/js/labeling.js asks for at a time
REFILL_REQUESTS_PER_LABELLER = 2   # a refill serves each active labeller this many page requests
MAX_REFILL = 2000         # one strategy pass adds at most this many galaxies


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
    """Up to n queue items for this person, leased to them.  When the queue runs low a
    refill job is queued (never run here); an empty list means "picking, ask again"."""
    items = _claim(task, user, n, set(exclude))
    if refill_when_empty and (len(items) < n or remaining(task) < task.batch_size):
        if task.embedding_set.status != ArtifactStatus.READY:
            if items:          # hand-picked galaxies can still be labelled
                return items
            raise QueueUnavailable(f"the task's embedding set “{task.embedding_set}” is "
                                   f"{task.embedding_set.status}; the model can pick galaxies once it is "
                                   "ready (galaxies sent from the map can be labelled now)")
        job = request_refill(task, user)
        job.refresh_from_db(fields=["status"])
        if len(items) < n and job.status == "succeeded":      # already ran (eager mode): hand out its picks
            items += _claim(task, user, n - len(items), set(exclude) | {q.galaxy_id for q in items})
    return items


REFILL_KIND = "label_refill"


def pending_refill(task: Task):
    """The task's refill job still queued or running, if any."""
    from webapp.jobs.models import Job

    return (Job.objects.filter(kind=REFILL_KIND, params__task_id=task.pk,
                               status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).order_by("id").first())


def request_refill(task: Task, user=None):
    """Queue a refill job for the task unless one is pending (one at a time per task); returns the job."""
    from webapp.jobs.services import create_job

    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).first()     # dedupe under concurrency (PostgreSQL)
        job = pending_refill(task)
        if job is None:
            job = create_job(REFILL_KIND, {"task_id": task.pk}, user=user,
                             title=f"Pick galaxies to label: {task.name}")
    return job


def run_refill_job(job, progress) -> dict:
    """Job handler (cpu queue): params {"task_id"}; appends the strategy's next batch."""
    task = Task.objects.select_related("embedding_set").filter(pk=job.params.get("task_id")).first()
    if task is None:
        log.warning("task %s is gone; nothing to refill", job.params.get("task_id"))
        return {"skipped": "task deleted"}
    size = refill_size(task)
    progress(0, 2, f"picking {size} galaxies to label")
    added = refill(task, size)
    progress(1, 2, f"queued {added} galaxies; rendering their images")
    result = {"task_id": task.pk, "added": added, "batch": size}
    try:   # the queued galaxies are committed and servable: a render failure must not fail the refill
        result["prerendered"] = prerender.prerender_queue(task, limit=max(prerender.PRERENDER_ITEMS, size))
    except Exception as exc:
        log.exception("task %s: pre-rendering the queue's images failed; they render on first request", task.pk)
        result["prerendered"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    progress(2, 2, f"queued {added} galaxies")
    return result


def _claim(task: Task, user, n: int, exclude: set[int]) -> list[QueueItem]:
    """Lease up to n items, best rank first: a fixed number of queries whatever n (one read
    and at most two lease queries per chunk of SCAN_CHUNK rows while nobody competes)."""
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
        candidates = [item for item in chunk if item.galaxy_id not in skip]
        while candidates and len(picked) < n:
            batch, candidates = candidates[:n - len(picked)], candidates[n - len(picked):]
            leased = _lease(task, batch, user, now)
            picked += [item for item in batch if item.pk in leased]
    return picked


def _lease(task: Task, items: list[QueueItem], user, now) -> set[int]:
    """Atomically reserve these items for this person in one UPDATE; returns the ids it got
    (an item someone else leased first is left out)."""
    ids = [item.pk for item in items]
    if task.votes_per_galaxy > 1:
        return set(ids)   # several people are meant to see it: no exclusive lease
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now) | Q(leased_by=user)
    until = now + timedelta(seconds=LEASE_SECONDS)
    changed = QueueItem.objects.filter(pk__in=ids, done=False).filter(free).update(leased_by=user, leased_until=until)
    if changed == len(ids):
        return set(ids)
    # some were taken: this request's lease carries its own `until`, so it tells ours apart
    return set(QueueItem.objects.filter(pk__in=ids, leased_by=user, leased_until=until).values_list("pk", flat=True))


def release_leases(task: Task, user) -> int:
    """Give back every galaxy leased to this person (they left the page)."""
    return QueueItem.objects.filter(task=task, leased_by=user, done=False).update(leased_by=None, leased_until=None)


def remaining(task: Task) -> int:
    """Queued galaxies not done yet (for the page's counter)."""
    return QueueItem.objects.filter(task=task, done=False).count()


def active_labellers(task: Task) -> int:
    """People holding an unexpired lease on the task's queue (labelling now)."""
    return (QueueItem.objects.filter(task=task, done=False, leased_until__gt=timezone.now())
            .values("leased_by").distinct().count())


def refill_size(task: Task) -> int:
    """Galaxies the next refill adds: the task's batch, or enough for everyone labelling now."""
    demand = active_labellers(task) * PAGE_REQUEST * REFILL_REQUESTS_PER_LABELLER
    return min(max(task.batch_size, demand), max(task.batch_size, MAX_REFILL))


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
