"""Shared fixtures: isolated data directory, users for every role, a real Celery worker."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under CI=true, skips in e2e, faults and shared-data tests fail the run (see tests/ci_skips.py).
from tests.ci_skips import pytest_runtest_makereport, pytest_sessionfinish, pytest_terminal_summary  # noqa: F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GZ1_DIR = SHARED_DATA / "gz1_sdss"


def needs_shared_data(present: bool, reason: str):
    """Skip where ../shared/data lacks something, and mark the test as a shared-data test
    (whose skip fails a CI run, see tests/ci_skips.py)."""
    def mark(test):
        return pytest.mark.shared_data(pytest.mark.skipif(not present, reason=reason)(test))
    return mark


needs_gz1 = needs_shared_data((GZ1_DIR / "smallCSV_class.csv").exists(),
                              "real SDSS data (../shared/data/gz1_sdss) is not present")


@pytest.fixture(autouse=True)
def _isolated_data_dir(request, tmp_path, settings):
    """Every test writes image stores, caches and checkpoints under its own tmp dir."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings.DATA_DIR = data_dir
    yield data_dir


@pytest.fixture
def fast_password_hashing(settings):
    """MD5 password hashing: role_clients creates four users, and PBKDF2 would spend about a
    second per test on them.  Opt in with pytest.mark.usefixtures("fast_password_hashing")."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def role_groups(transactional_db):
    """The role groups, put back: a transactional test flushes every table afterwards, the groups
    that a data migration created included, and make_user() and the role checks need them."""
    from django.contrib.auth.models import Group
    from webapp.accounts.roles import ROLES

    for role in ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def make_user(db, django_user_model):
    from django.contrib.auth.models import Group

    def make(role: str | None = "viewer", username: str | None = None):
        name = username or f"{role or 'norole'}-user"
        user = django_user_model.objects.create_user(username=name, password="pw-" + name)
        if role:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user
    return make


@pytest.fixture
def role_clients(make_user, client):
    """A logged-in Django test client per role, plus 'anonymous'."""
    from django.test import Client

    clients = {"anonymous": Client()}
    for role in ("viewer", "labeler", "curator", "admin"):
        c = Client()
        c.force_login(make_user(role))
        clients[role] = c
    return clients


@pytest.fixture
def curator_client(make_user, client):
    client.force_login(make_user("curator", "cur"))
    return client


def using_real_services() -> bool:
    return bool(os.environ.get("DATABASE_URL", "").startswith("postgres")
                and os.environ.get("CELERY_BROKER_URL", "").startswith("redis"))


@pytest.fixture(autouse=True)
def label_refill_inline(request, monkeypatch):
    """Labeling queue refills are jobs, never run inside a request (labeling/services/queue.py).
    Tests have no worker by default, so here the job runs as soon as it is queued, as Celery's
    eager mode would.  Mark a test ``refill_async`` to see the real queueing."""
    if request.node.get_closest_marker("refill_async"):
        yield
        return
    from webapp.labeling.services import queue

    real = queue.request_refill

    def queue_and_run(task, user=None):
        from webapp.jobs.services import execute_job

        job = real(task, user)
        if job.status == "queued":
            execute_job(job.pk, worker="test-inline")
        return job

    monkeypatch.setattr(queue, "request_refill", queue_and_run)
    yield


# oneDNN's convolution backward (torch 2.13 CPU, jit_avx2_1x1 kernels) spun for ever inside
# GOMP_parallel on this session's VM — even on a commit whose suite had passed CI — while the
# native kernels finish the same tiny training test in 5 s.  The suite's convolutions are tiny, so
# it runs them on the native kernels: a hang on one machine's CPU must not stop the suite.  The
# app and the benchmarks keep oneDNN (LATENTSKY_TEST_MKLDNN=1 restores it here).
if os.environ.get("LATENTSKY_TEST_MKLDNN") != "1":
    os.environ.setdefault("LATENTSKY_TORCH_MKLDNN", "0")  # inherited by the workers tests start
    import torch

    torch.backends.mkldnn.enabled = False

# One intra-op torch thread in the test process.  The suite's tensors are tiny (MLPs of 64-256
# units, 16-32 px convolutions), so a second OpenMP thread saves nothing, and whenever the other
# core is busy (a Celery worker, PostgreSQL or Chromium that the test started, or another job on
# the machine) the two threads spin-wait on each other at every op: fit_mlp's 1,500 steps took
# 3 s with one thread and 133 s with two beside one busy process (worker processes get
# OMP_NUM_THREADS=1 already, tests/integration/conftest.py).  LATENTSKY_TEST_TORCH_THREADS=N
# sets another count.
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("LATENTSKY_TEST_TORCH_THREADS", "1")))
