"""Fault-injection helpers: start real workers with a fast reaper, kill them, restart services."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, _wait_for_ready, wait_for_job, worker_env  # noqa: F401

# Dead workers are noticed within seconds here instead of minutes in production.
FAST_REAPER = {"LATENTSKY_JOB_STALE_SECONDS": "6", "LATENTSKY_JOB_REAP_EVERY_SECONDS": "2",
               "LATENTSKY_JOB_REQUEUE_AFTER_SECONDS": "5"}


class WorkerProcess:
    """A ``celery worker`` in its own process group, so SIGKILL takes its pool children too."""

    def __init__(self, env: dict, log_path: Path, name: str):
        self.log_path = log_path
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,cpu,gpu",
             "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO", "-n", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_ready(log_path, self.proc, timeout=90)

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill_pool_child(self) -> int:
        """SIGKILL the process running the task (the OOM killer's way); the parent survives."""
        child = self.children()[0]
        os.kill(child, signal.SIGKILL)
        return child

    def kill_all(self) -> None:
        """SIGKILL the whole worker, parent and children (a machine that vanished)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self._log.close()


@pytest.fixture
def start_worker(worker_env, tmp_path):
    started: list[WorkerProcess] = []

    def start(name: str = "w", **extra) -> WorkerProcess:
        env = {**worker_env, **FAST_REAPER, **{k: str(v) for k, v in extra.items()}}
        worker = WorkerProcess(env, tmp_path / f"worker-{name}.log", f"{name}{len(started)}-{os.getpid()}")
        started.append(worker)
        return worker
    yield start
    for worker in started:
        worker.stop()


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
