"""Create, dispatch, claim, run, cancel and reap jobs.

Only this module and workers/ know about Celery.  Every other app hands a
``handler(job, progress)`` to the registry and never sees a task id.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from webapp.jobs.models import Job
from webapp.jobs.registry import get_kind, resolve_handler

log = logging.getLogger(__name__)
TASK_NAME = "latentsky.run_job"
RESULT_REF_PREFIX = "$parent."


class JobCancelled(Exception):
    """Raised inside a handler (by the progress callback) when a user cancelled the job."""


# ----------------------------------------------------------------- creating

def create_job(kind: str, params: dict | None = None, user=None, title: str = "",
               then: list[dict] | None = None, parent: Job | None = None, dispatch: bool = True) -> Job:
    """Insert a queued Job and send its message once the transaction commits.

    ``then`` is a list of follow-up job specs ``{"kind", "params", "title", "then"}``
    created when this job succeeds; a param value ``"$parent.key"`` is replaced by
    ``result[key]`` of this job.
    """
    spec = get_kind(kind)
    params = dict(params or {})
    if then:
        params["_then"] = then
    job = Job.objects.create(kind=kind, queue=spec.queue, params=params, title=title or spec.label,
                             launched_by=user if getattr(user, "is_authenticated", False) else None,
                             parent=parent)
    if dispatch:
        transaction.on_commit(lambda: dispatch_job(job.pk))
    return job


def dispatch_job(job_id: int) -> None:
    """Send the Celery message for a job (or run it inline in eager mode)."""
    from workers.celery import app

    job = Job.objects.get(pk=job_id)
    if app.conf.task_always_eager:
        app.tasks[TASK_NAME].apply(args=[job_id])
        return
    result = app.send_task(TASK_NAME, args=[job_id], queue=job.queue)
    Job.objects.filter(pk=job_id).update(celery_task_id=result.id, dispatched_at=timezone.now())


# ----------------------------------------------------------------- claiming

def _claimable(now) -> Q:
    """Queued, or running under a dead worker (stale heartbeat)."""
    stale_before = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    return Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RUNNING, heartbeat_at__lt=stale_before)


def claim_job(job_id: int, worker: str) -> Job | None:
    """Atomically move a job to running. None when another worker already has it.

    A running job whose heartbeat is stale belongs to a dead worker, so it may be
    claimed again: that is how a redelivered message resumes a killed job.  A job
    that already used JOB_MAX_ATTEMPTS claims is not claimed (see give_up_if_exhausted).
    """
    now = timezone.now()
    changed = (Job.objects.filter(pk=job_id).filter(_claimable(now), attempts__lt=settings.JOB_MAX_ATTEMPTS)
               .update(status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker,
                       attempts=F("attempts") + 1, error=""))
    if not changed:
        return None
    job = Job.objects.get(pk=job_id)
    if job.attempts > 1:
        _update(job_id, message=f"retry {job.attempts - 1} (attempt {job.attempts} of "
                                f"{settings.JOB_MAX_ATTEMPTS}) after the previous worker was lost")
    return job


def gave_up_message(attempts: int) -> str:
    return f"gave up after {attempts} attempts"


def give_up_if_exhausted(job_id: int) -> bool:
    """Fail a claimable job that has used all its attempts.  True when this call failed it.

    Every attempt of such a job ended with its worker lost (killed, out of memory, machine
    gone) before the job could record an outcome, so running it again would only repeat that.
    The update is conditional, so two workers or reapers racing here fail it once.
    """
    now = timezone.now()
    exhausted = Job.objects.filter(pk=job_id).filter(_claimable(now), attempts__gte=settings.JOB_MAX_ATTEMPTS)
    attempts = exhausted.values_list("attempts", flat=True).first()
    if attempts is None:
        return False
    changed = exhausted.update(
        status=Job.Status.FAILED, finished_at=now, message=gave_up_message(attempts),
        error=(f"{gave_up_message(attempts)}: each attempt's worker was lost before the job finished "
               f"(killed, out of memory or gone; see the worker logs). "
               f"LATENTSKY_JOB_MAX_ATTEMPTS={settings.JOB_MAX_ATTEMPTS}."))
    if changed:
        log.error("job %s: %s", job_id, gave_up_message(attempts))
    return bool(changed)


def _update(job_id: int, **fields) -> int:
    return Job.objects.filter(pk=job_id).update(**fields)


# ----------------------------------------------------------------- progress

class Progress:
    """The ``progress(done, total, message)`` callback a handler receives.

    Writes at most every ``interval`` seconds (and always at the end), refreshes
    the heartbeat, and raises JobCancelled once a user asked to cancel.
    ``metric(name, x, y)`` appends a point to a live series such as the loss curve.
    """

    def __init__(self, job: Job, interval: float = 0.5, span: tuple[float, float] = (0.0, 1.0)):
        self.job_id = job.pk
        self.interval = interval
        self.span = span
        self._last_write = 0.0
        self._series: dict[str, list] = dict(job.metrics or {})
        self._dirty_metrics = False

    def __call__(self, done: float, total: float, message: str = "") -> None:
        now = time.monotonic()
        final = total > 0 and done >= total
        if not final and now - self._last_write < self.interval:
            return
        self._last_write = now
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        lo, hi = self.span
        fields = {"progress": lo + (hi - lo) * fraction, "heartbeat_at": timezone.now()}
        if message:
            fields["message"] = message[:300]
        if self._dirty_metrics:
            fields["metrics"] = self._series
            self._dirty_metrics = False
        _update(self.job_id, **fields)
        self.check_cancelled()

    def sub(self, lo: float, hi: float) -> "Progress":
        """A callback that maps 0..1 of a sub-step onto [lo, hi] of this job's bar."""
        child = Progress.__new__(Progress)
        child.__dict__.update(self.__dict__)
        a, b = self.span
        child.span = (a + (b - a) * lo, a + (b - a) * hi)
        return child

    def metric(self, name: str, x: float, y: float) -> None:
        self._series.setdefault(name, []).append([x, y])
        self._dirty_metrics = True

    def flush(self) -> None:
        if self._dirty_metrics:
            _update(self.job_id, metrics=self._series, heartbeat_at=timezone.now())
            self._dirty_metrics = False

    def check_cancelled(self) -> None:
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise JobCancelled("cancelled by a user")

    def should_stop(self) -> bool:
        return Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()


class Heartbeat:
    """Keeps heartbeat_at fresh while a handler is inside a long call with no progress."""

    def __init__(self, job_id: int, every: float = 15.0):
        self.job_id, self.every = job_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{job_id}")

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                _update(self.job_id, heartbeat_at=timezone.now())
            except Exception:  # the database may be restarting; the next beat retries
                log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)
            finally:
                close_old_connections()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


# ----------------------------------------------------------------- running

def execute_job(job_id: int, worker: str | None = None) -> str:
    """Body of the Celery task: claim, run the handler, record the outcome."""
    worker = worker or socket.gethostname()
    if not Job.objects.filter(pk=job_id).exists():
        log.warning("job %s no longer exists; dropping its message", job_id)
        return "missing"
    job = claim_job(job_id, worker)
    if job is None:
        if give_up_if_exhausted(job_id):
            return "gave up"
        log.info("job %s is not claimable (already taken or finished)", job_id)
        return "skipped"
    if job.cancel_requested:
        finish_job(job, Job.Status.CANCELLED, message="cancelled before it started")
        return "cancelled"
    progress = Progress(job)
    try:
        with Heartbeat(job.pk):
            result = resolve_handler(job.kind)(job, progress) or {}
        progress.flush()
    except JobCancelled:
        progress.flush()
        finish_job(job, Job.Status.CANCELLED, message="cancelled; last checkpoint kept")
        return "cancelled"
    except Exception as exc:  # the handler's error is the job's error, shown to the user
        log.exception("job %s (%s) failed", job.pk, job.kind)
        progress.flush()
        finish_job(job, Job.Status.FAILED, message=f"failed: {exc}"[:300],
                   error="".join(traceback.format_exception(exc))[-20000:])
        return "failed"
    try:
        # One transaction: whoever sees the job succeeded also sees its follow-ups.
        with transaction.atomic():
            finish_job(job, Job.Status.SUCCEEDED, result=result, message="done")
            _start_followups(job, result)
    except Exception as exc:
        # Any follow-up that cannot start (a missing result key, an unknown kind, bad params)
        # fails the job now: left running, the reaper would re-run it into the same error.
        # If the database itself is down this finish_job raises too, the job stays running,
        # and the reaper retries it within JOB_MAX_ATTEMPTS.
        log.exception("job %s (%s): a follow-up could not start", job.pk, job.kind)
        finish_job(job, Job.Status.FAILED, result=result, message=f"its follow-up could not start: {exc}"[:300],
                   error="".join(traceback.format_exception(exc))[-20000:])
        return "failed"
    return "succeeded"


def finish_job(job: Job, status: str, result: dict | None = None, message: str = "", error: str = "") -> None:
    fields = {"status": status, "finished_at": timezone.now(), "message": message[:300], "error": error}
    if status == Job.Status.SUCCEEDED:
        fields["progress"] = 1.0
    if result is not None:
        fields["result"] = result
    _update(job.pk, **fields)


def _start_followups(job: Job, result: dict) -> None:
    for spec in job.params.get("_then", []):
        params = {k: _resolve_ref(v, result) for k, v in spec.get("params", {}).items()}
        with transaction.atomic():
            create_job(spec["kind"], params, user=job.launched_by, title=spec.get("title", ""),
                       then=spec.get("then"), parent=job)


def _resolve_ref(value, result: dict):
    if isinstance(value, str) and value.startswith(RESULT_REF_PREFIX):
        key = value[len(RESULT_REF_PREFIX):]
        if key not in result:
            raise KeyError(f"follow-up job needs {key!r} but the parent job's result has {sorted(result)}")
        return result[key]
    return value


# ----------------------------------------------------------------- cancel and reap

def request_cancel(job: Job) -> bool:
    """Ask a job to stop.  A queued job is cancelled at once; a running one at its next progress call."""
    if job.is_finished:
        return False
    _update(job.pk, cancel_requested=True, message="cancelling…")
    Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now(), message="cancelled before it started")
    return True


def reap_jobs(queued_older_than: float = 300.0) -> list[int]:
    """Re-send messages for jobs whose message or worker was lost.

    Safe to run any time and from any process: a duplicate message is harmless
    because claim_job lets only one worker run a job.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    # Not re-sent within the period: a job waiting behind a long queue gets one extra message
    # per period, not one per reaper round.
    quiet = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - timedelta(seconds=queued_older_than))
    lost_workers = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
    lost_messages = Job.objects.filter(status=Job.Status.QUEUED,
                                       created_at__lt=now - timedelta(seconds=queued_older_than)).filter(quiet)
    ids = sorted(set(lost_workers.values_list("pk", flat=True)) | set(lost_messages.values_list("pk", flat=True)))
    # A job whose workers died on every attempt is failed here, not sent again.
    ids = [job_id for job_id in ids if not give_up_if_exhausted(job_id)]
    for job_id in ids:
        log.warning("reaper: re-sending job %s", job_id)
        _update(job_id, message="re-queued by the reaper after its worker or message was lost")
        dispatch_job(job_id)
    return ids
