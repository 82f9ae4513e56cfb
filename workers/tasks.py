"""Thin Celery tasks: take primitive ids, call a service, return."""
from __future__ import annotations

import logging

from workers.celery import app

log = logging.getLogger(__name__)


@app.task(name="latentsky.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> str:
    from webapp.jobs.services import execute_job

    return execute_job(job_id, worker=self.request.hostname or "")


@app.task(name="latentsky.reap_jobs")
def reap_jobs() -> list[int]:
    from webapp.jobs.services import reap_jobs as reap

    return reap()
