"""services/maps.py: the umap job, whole and sampled (chunk jobs shared through the Job table)."""
import contextlib

import numpy as np
import pytest

from tests.embeddings.map_factories import clustered_vectors, make_embedding_set
from webapp.embeddings.models import ArtifactStatus, LatentMap
from webapp.embeddings.services import maps
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.slow]



@pytest.fixture(autouse=True)
def _no_heartbeat_thread(monkeypatch):
    """The heartbeat thread has no database access in non-transactional tests; jobs here are short."""
    class Quiet:
        def __init__(self, *a, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(services, "Heartbeat", Quiet)


FAST = {"n_neighbors": 8, "n_epochs": 30, "seed": 0}


@contextlib.contextmanager
def chunk_handler(handler):
    """Run umap_chunk jobs through ``handler`` (the registry resolves handlers by dotted path)."""
    from webapp.jobs import registry
    original = registry.JOB_KINDS["umap_chunk"]
    globals()["_chunk_handler"] = handler
    registry.JOB_KINDS["umap_chunk"] = registry.JobKind(f"{__name__}._chunk_handler", "cpu", "chunk")
    try:
        yield
    finally:
        registry.JOB_KINDS["umap_chunk"] = original


def run(kind, params):
    job = services.create_job(kind, params, dispatch=False)
    status = services.execute_job(job.pk, "test-worker")
    job.refresh_from_db()
    assert status == "succeeded", job.error
    return job


def test_whole_map_job_stores_ready_coords_with_params(settings):
    vectors, labels = clustered_vectors(80, 8, clusters=2)
    es = make_embedding_set(vectors=vectors, n=80)
    job = run("umap", {"embedding_set_id": es.pk, "config": FAST})
    lm = LatentMap.objects.get(pk=job.result["latent_map_id"])
    assert (lm.status, lm.n, lm.job_id, job.progress) == (ArtifactStatus.READY, 80, job.pk, 1.0)
    assert lm.params["n_epochs"] == 30 and lm.params["fit_rows"] == 80 and "normalisation" in lm.params
    coords = maps.load_coords(lm)
    assert coords.shape == (80, 2) and coords.dtype == np.float32
    assert np.abs(coords).max() == pytest.approx(10.0, rel=1e-3)  # normalised extent
    assert lm.coords_path.startswith(es.vectors_path.rsplit("/", 1)[0])
    assert not list((settings.DATA_DIR / lm.coords_path).parent.glob("*.partial"))
    assert len(list((settings.DATA_DIR / lm.coords_path).parent.glob("catalogue-*.npz"))) == 1  # sky cache ready
    c0, c1 = coords[labels == 0].mean(0), coords[labels == 1].mean(0)
    assert np.linalg.norm(c0 - c1) > 3  # the two clusters land apart


def test_sampled_map_fans_out_chunk_jobs_and_assembles(settings):
    vectors, labels = clustered_vectors(120, 8, clusters=2, seed=1)
    es = make_embedding_set(vectors=vectors, n=120)
    cfg = {**FAST, "sample_threshold": 50, "sample_size": 50, "chunk_size": 40}
    job = run("umap", {"embedding_set_id": es.pk, "config": cfg})
    children = list(Job.objects.filter(parent=job).order_by("id"))
    assert [(c.kind, c.params["start"], c.params["stop"], c.status) for c in children] == [
        ("umap_chunk", 0, 40, "succeeded"), ("umap_chunk", 40, 80, "succeeded"), ("umap_chunk", 80, 120, "succeeded")]
    lm = LatentMap.objects.get(pk=job.result["latent_map_id"])
    assert (lm.status, job.result["chunks"], lm.params["fit_rows"]) == ("ready", 3, 50)
    coords = maps.load_coords(lm)
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    c0, c1 = coords[labels == 0].mean(0), coords[labels == 1].mean(0)
    assert np.linalg.norm(c0 - c1) > 3  # transformed rows land with their cluster
    assert not maps.parts_dir(lm).exists() and maps.reducer_path(lm).exists()


def test_rerun_after_lost_worker_reuses_map_row_reducer_and_finished_chunks(settings):
    es = make_embedding_set(n=90)
    cfg = {**FAST, "sample_threshold": 40, "sample_size": 40, "chunk_size": 30}
    job = services.create_job("umap", {"embedding_set_id": es.pk, "config": cfg}, dispatch=False)
    # First attempt: fit and fan out, then "die" before assembling (simulated by a failing chunk 2).
    real = maps.run_umap_chunk_job
    calls = []

    def flaky(chunk_job, progress):
        calls.append(chunk_job.params["start"])
        if chunk_job.params["start"] == 60 and calls.count(60) == 1:
            raise RuntimeError("worker lost")
        return real(chunk_job, progress)
    with chunk_handler(flaky):
        assert services.execute_job(job.pk, "w1") == "failed"
        lm = LatentMap.objects.get(job=job)
        assert lm.status == "failed" and maps.reducer_path(lm).exists()
        # Re-run the same job (as the reaper would): the failed chunk is re-queued and retried.
        Job.objects.filter(pk=job.pk).update(status="queued")
        assert services.execute_job(job.pk, "w2") == "succeeded"
    assert LatentMap.objects.filter(job=job).count() == 1
    assert LatentMap.objects.get(job=job).status == "ready"
    assert calls == [0, 30, 60, 60]  # chunks 0 and 30 were not recomputed
    assert Job.objects.filter(parent=job).count() == 3


def test_unknown_option_and_missing_set_fail_with_clear_message():
    es = make_embedding_set(n=20)
    job = services.create_job("umap", {"embedding_set_id": es.pk, "config": {"n_neigbors": 5}}, dispatch=False)
    assert services.execute_job(job.pk, "w") == "failed"
    assert "unknown UMAP option(s) ['n_neigbors']" in Job.objects.get(pk=job.pk).message
    job = services.create_job("umap", {"embedding_set_id": 10**6}, dispatch=False)
    assert services.execute_job(job.pk, "w") == "failed"
    assert "does not exist" in Job.objects.get(pk=job.pk).message
    assert not LatentMap.objects.exists()


def test_cancelling_the_map_job_stops_its_chunks():
    es = make_embedding_set(n=90)
    cfg = {**FAST, "sample_threshold": 40, "sample_size": 40, "chunk_size": 30}
    job = services.create_job("umap", {"embedding_set_id": es.pk, "config": cfg}, dispatch=False)
    real = maps.run_umap_chunk_job

    def cancel_during_first_chunk(chunk_job, progress):
        services.request_cancel(Job.objects.get(pk=job.pk))  # a user presses Cancel meanwhile
        return real(chunk_job, progress)
    with chunk_handler(cancel_during_first_chunk):
        assert services.execute_job(job.pk, "w") == "cancelled"
    assert sorted(Job.objects.filter(parent=job).values_list("status", flat=True)) == ["cancelled"] * 3
    assert LatentMap.objects.get(job=job).status == "failed"
