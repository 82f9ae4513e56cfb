"""A worker killed (SIGKILL) in the middle of a job: the job is retried and finishes once.

Two ways to die: the pool process is killed (the OOM killer's way; Celery's parent
sees WorkerLostError and, with acks_late + reject_on_worker_lost, the message is
re-delivered), or the whole worker vanishes (a lost machine; the Job row's
heartbeat goes stale and the reaper in the next worker re-sends it).
"""
import pytest

from tests.faults.conftest import wait_for_job, wait_until
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]


def _running_at(job_id, fraction):
    job = Job.objects.get(pk=job_id)
    return job.status == "running" and job.progress >= fraction


def test_pool_process_killed_mid_job_is_redelivered_and_finishes(start_worker):
    worker = start_worker("pool")
    job = create_job("selftest", {"steps": 60, "delay": 0.1}, title="killed mid-way")
    wait_until(lambda: _running_at(job.pk, 0.2), 60, "the job to be a fifth done")
    worker.kill_pool_child()
    done = wait_for_job(job.pk, timeout=120, proc=worker.proc)
    assert done.status == "succeeded", (done.status, done.message, worker.log_path.read_text()[-3000:])
    assert done.attempts == 2 and done.result["attempt"] == 2


def test_whole_worker_killed_mid_job_is_reaped_by_the_next_worker(start_worker):
    first = start_worker("doomed")
    job = create_job("selftest", {"steps": 60, "delay": 0.1}, title="worker vanishes")
    wait_until(lambda: _running_at(job.pk, 0.2), 60, "the job to be a fifth done")
    first.kill_all()
    assert Job.objects.get(pk=job.pk).status == "running"  # the row still says running: nobody told it
    second = start_worker("rescuer")
    done = wait_for_job(job.pk, timeout=120, proc=second.proc)
    assert done.status == "succeeded", (done.status, done.message, second.log_path.read_text()[-3000:])
    assert done.attempts == 2


def test_a_job_that_kills_its_worker_every_time_gives_up_after_max_attempts(start_worker):
    """Without the cap the reaper would re-send this job for ever, each time killing a pool process."""
    worker = start_worker("poisoned", LATENTSKY_JOB_MAX_ATTEMPTS=3)
    job = create_job("selftest", {"steps": 5, "delay": 0.05, "kill_own_process": True}, title="kills its worker")
    done = wait_for_job(job.pk, timeout=150, proc=worker.proc)
    log = worker.log_path.read_text()
    assert (done.status, done.attempts, done.message) == ("failed", 3, "gave up after 3 attempts"), log[-3000:]
    assert log.count("WorkerLostError") >= 3  # three real pool processes died, one per attempt
    assert worker.proc.poll() is None  # the worker itself survived and stays usable
    healthy = create_job("selftest", {"steps": 2, "delay": 0}, title="after the poison")
    assert wait_for_job(healthy.pk, timeout=60, proc=worker.proc).status == "succeeded"
