"""Job rows: the database's view of every long-running piece of work.

The Celery message only carries the job id; the row carries kind, parameters,
status, progress and result, so a lost message can be re-sent from the row
(see services.reap_jobs) and a redelivered one cannot run twice
(see services.claim_job).
"""
from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=64, db_index=True)
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    queue = models.CharField(max_length=32, default="default")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Time series a page may plot live, e.g. {"loss": [[step, value], ...]}.
    metrics = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)  # 0..1
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="jobs")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its Celery message was last sent; the reaper re-sends a lost one at most once per period.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Job {self.pk} {self.kind} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or self.heartbeat_at
        return (end - self.started_at).total_seconds() if end else None

    def as_dict(self) -> dict:
        return {
            "id": self.pk, "kind": self.kind, "title": self.title or self.kind,
            "status": self.status, "progress": round(self.progress, 4),
            "message": self.message, "error": self.error, "attempts": self.attempts,
            "queue": self.queue, "result": self.result,
            "cancel_requested": self.cancel_requested,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": self.duration_seconds,
            "launched_by": self.launched_by.username if self.launched_by_id else None,
        }
