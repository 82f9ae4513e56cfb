"""Redis restarted while jobs are queued: the messages are gone, the Job rows are not.

A private redis-server (no persistence, like the production default here) is
started for this test, so the shared services are never disturbed.  Jobs are
queued with no worker running, Redis is killed and started again (the queue is
now empty), then a worker starts: its reaper re-sends every queued Job from its
row, and each job runs exactly once.
"""
import shutil
import socket
import subprocess
import time

import pytest

from tests.faults.conftest import wait_for_job, wait_until
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, port: int, workdir):
        self.port, self.workdir = port, workdir
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 20, "redis to accept connections")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def llen(self, key: str) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(f"LLEN {key}\r\n".encode())
            return int(s.recv(64).decode().strip().lstrip(":"))

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def _point_app_at(app, url: str) -> tuple:
    """Send this process's Celery messages to ``url``; returns what restores the old broker.

    The cached pools are swapped out, not closed: kombu's global producer registry keeps
    them, and a closed one would break every later test that sends a job."""
    saved = (app._pool, app.amqp._producer_pool, app.conf.broker_url, app.conf.broker_write_url,
             app.conf.broker_read_url)
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = app.conf.broker_write_url = app.conf.broker_read_url = url
    return saved


def _restore_app(app, saved: tuple) -> None:
    private = app._pool
    (app._pool, app.amqp._producer_pool, app.conf.broker_url, app.conf.broker_write_url,
     app.conf.broker_read_url) = saved
    if private is not None:
        private.force_close_all()


@pytest.fixture
def private_redis(tmp_path, settings):
    if not shutil.which("redis-server") and not __import__("os").path.exists(REDIS):
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(_free_port(), tmp_path)
    redis.start()
    url = f"redis://127.0.0.1:{redis.port}/0"
    from workers.celery import app
    saved = _point_app_at(app, url)
    settings.CELERY_BROKER_URL = url
    yield redis, url
    _restore_app(app, saved)
    if redis.proc.poll() is None:
        redis.kill()


def test_jobs_queued_before_a_redis_restart_still_run_once(private_redis, start_worker):
    redis, url = private_redis
    jobs = [create_job("selftest", {"steps": 3, "delay": 0.01}, title=f"queued {i}") for i in range(3)]
    wait_until(lambda: redis.llen("cpu") + redis.llen("default") == 3, 20, "3 messages in Redis")
    redis.kill()
    redis.start()
    assert redis.llen("default") == 0, "a restarted Redis without persistence has lost the messages"
    time.sleep(1)
    worker = start_worker("after-restart", CELERY_BROKER_URL=url)
    for job in jobs:
        done = wait_for_job(job.pk, timeout=90, proc=worker.proc)
        assert done.status == "succeeded", (done.message, worker.log_path.read_text()[-3000:])
        assert done.attempts == 1
    assert "re-sending job" in worker.log_path.read_text()
    assert Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count() == 3
