"""The Celery application.

Tasks stay thin: they receive a Job id and call webapp.jobs.services.execute_job,
which claims the row atomically and runs the registered handler.  Messages are
acknowledged late so a worker killed mid-job leaves its message to be
redelivered (Redis, RabbitMQ); for brokers that cannot redeliver, the reaper
re-sends jobs whose heartbeat went stale.
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from webapp.jobs.registry import JOB_KINDS, QUEUES  # noqa: E402

def _transport_options(broker_url: str) -> dict:
    if broker_url.startswith(("redis://", "rediss://")):
        # Redeliver an unacknowledged message this long after its worker vanished.
        return {"visibility_timeout": int(os.environ.get("LATENTSKY_VISIBILITY_TIMEOUT", "3600"))}
    # The SQLAlchemy transport hands its options to create_engine(); give it none.
    return {}


app = Celery("latentsky")
app.conf.update(
    broker_url=settings.CELERY_BROKER_URL,
    task_always_eager=settings.CELERY_TASK_ALWAYS_EAGER,
    task_eager_propagates=True,
    task_ignore_result=True,  # outcomes live on Job rows
    result_backend=None,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # long jobs: never hold a second message hostage
    task_default_queue="default",
    task_queues=None,
    task_create_missing_queues=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options=_transport_options(settings.CELERY_BROKER_URL),
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)
app.conf.imports = ("workers.tasks", "workers.signals")

# Every queue a job may be sent to; docker-compose's workers must consume all of them.
ROUTED_QUEUES = tuple(sorted({kind.queue for kind in JOB_KINDS.values()} | set(QUEUES)))
