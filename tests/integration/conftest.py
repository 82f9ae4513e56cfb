"""A real ``celery worker`` process sharing the test database."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    name = connection.settings_dict["NAME"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{name}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


@pytest.fixture
def worker_env(tmp_path, settings):
    """Environment for a worker that sees this test's database, data dir and broker."""
    env = dict(os.environ)
    # Same broker as this test process (settings), so messages sent here reach the worker.
    broker = settings.CELERY_BROKER_URL
    env.update({
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": broker,
        "LATENTSKY_DATA_DIR": str(settings.DATA_DIR),
        "LATENTSKY_ENV": "test",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    })
    return env


@pytest.fixture
def celery_worker_proc(worker_env, tmp_path, settings):
    """Start ``celery -A workers worker`` on every queue; stop it after the test."""
    queue_name = f"t{os.getpid()}"
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,cpu,gpu",
         "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO", "-n", f"{queue_name}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT)
    _wait_for_ready(tmp_path / "worker.log", proc)
    proc.log_path = tmp_path / "worker.log"
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


def _wait_for_ready(log_path: Path, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("celery worker exited early:\n" + log_path.read_text()[-4000:])
        if "ready." in log_path.read_text():
            return
        time.sleep(0.3)
    raise RuntimeError("celery worker did not become ready:\n" + log_path.read_text()[-4000:])


def wait_for_job(job_id: int, timeout: float = 120.0, proc=None):
    from webapp.jobs.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.is_finished:
            return job
        time.sleep(0.3)
    log = proc.log_path.read_text()[-4000:] if proc is not None else ""
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job.status} {job.message}\n{log}")
