"""Jobs through a real ``celery worker`` process over the configured broker and database."""
import pytest

from tests.integration.conftest import wait_for_job
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_real_worker_runs_a_job_and_reports_progress(celery_worker_proc):
    job = services.create_job("selftest", {"steps": 5, "delay": 0.1})
    done = wait_for_job(job.pk, proc=celery_worker_proc)
    assert (done.status, done.progress, done.attempts) == ("succeeded", 1.0, 1)
    assert done.result == {"steps": 5, "attempt": 1}


def test_real_worker_honours_cancel(celery_worker_proc):
    job = services.create_job("selftest", {"steps": 400, "delay": 0.05})
    import time
    deadline = time.monotonic() + 60
    while Job.objects.get(pk=job.pk).status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    services.request_cancel(Job.objects.get(pk=job.pk))
    done = wait_for_job(job.pk, proc=celery_worker_proc)
    assert done.status == "cancelled"
    assert 0 < done.progress < 1
