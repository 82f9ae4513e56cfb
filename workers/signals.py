"""Worker start-up: re-send jobs orphaned by a dead worker, then keep checking."""
from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutting_down

log = logging.getLogger(__name__)
_stop = threading.Event()


def _reap_loop():
    from django.conf import settings
    from django.db import close_old_connections

    from webapp.jobs.services import reap_jobs

    while True:
        try:
            reap_jobs(queued_older_than=settings.JOB_REQUEUE_AFTER_SECONDS)
        except Exception:  # database briefly away: try again next round
            log.warning("job reaper failed", exc_info=True)
        finally:
            close_old_connections()
        if _stop.wait(settings.JOB_REAP_EVERY_SECONDS):
            return


@worker_ready.connect
def start_reaper(**_):
    threading.Thread(target=_reap_loop, daemon=True, name="job-reaper").start()


@worker_shutting_down.connect
def stop_reaper(**_):
    _stop.set()
