"""The demo pipeline: every step is a registered job kind with valid parameters, and
following it prints progress lines for a log file."""
import io

import pytest

from tests.conftest import needs_shared_data
from webapp.catalog.services.ingest import build_options
from webapp.demo import pipeline
from webapp.jobs.models import Job
from webapp.jobs.registry import JOB_KINDS

pytestmark = pytest.mark.unit


def _walk(steps):
    for step in steps:
        yield step
        yield from _walk(step.get("then", []))


def test_every_demo_step_is_a_registered_kind():
    kinds = [s["kind"] for s in _walk(pipeline.demo_steps(include_real=True))]
    assert kinds[0] == "simulate_surveys"
    assert all(k in JOB_KINDS for k in kinds), kinds


@needs_shared_data(pipeline.GZ1_DIR.exists(), "shared GZ1 data (../shared/data/gz1_sdss) is absent")
def test_real_sdss_ingest_step_has_valid_options():
    step = next(s for s in _walk(pipeline.demo_steps(include_real=True)) if s["kind"] == "ingest")
    params = dict(step["params"])
    assert pipeline.GZ1_DIR.samefile(params.pop("path"))
    fmt, opts = build_options(params)
    assert fmt == "folder"
    assert opts.survey == step["params"]["survey"]


def test_follow_reports_progress_to_a_log_and_returns_outcome(db):
    job = Job.objects.create(kind="selftest", title="one", status=Job.Status.SUCCEEDED, progress=1.0)
    out = io.StringIO()
    assert pipeline.follow([job.pk], out=out, poll=0.01, timeout=5) is True
    assert "100.0%" in out.getvalue() and "succeeded" in out.getvalue()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    assert pipeline.follow([job.pk], out=io.StringIO(), poll=0.01, timeout=5) is False


def _kinds(steps):
    return sorted(s["kind"] for s in _walk(steps))


def test_plan_on_an_empty_workspace_is_the_whole_pipeline(db):
    steps, notes = pipeline.plan_demo(n=50, include_real=False)
    assert _kinds(steps) == sorted(["simulate_surveys", "train_encoder", "embed", "umap", "build_index",
                                    "anomaly_scores", "demo_task"])
    assert notes == []


def test_plan_skips_what_exists_and_queues_only_the_missing_steps(db):
    import numpy as np

    from tests.catalog.factories import make_survey
    from webapp.embeddings.models import EmbeddingSet, Encoder
    from webapp.embeddings.services.vectors import write_embedding_set

    surveys = [make_survey(name=slug, slug=slug, n=50) for slug in pipeline.SIM_SLUGS]
    steps, notes = pipeline.plan_demo(n=50, include_real=False)
    assert _kinds(steps) == sorted(["train_encoder", "embed", "umap", "build_index", "anomaly_scores", "demo_task"])
    encoder = Encoder.objects.create(name=pipeline.DEMO_ENCODER, method="simclr", config={})
    es = EmbeddingSet.objects.create(encoder=encoder)
    es.surveys.add(*surveys)
    ids = [g.pk for s in surveys for g in s.galaxies.all()]
    write_embedding_set(es, np.array(ids), np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32))
    steps, notes = pipeline.plan_demo(n=50, include_real=False)
    assert _kinds(steps) == ["anomaly_scores", "build_index", "demo_task", "umap"]
    assert all(s["params"] == {"embedding_set_id": es.pk} for s in steps)
    # a step already running is not queued twice
    Job.objects.create(kind="umap", status=Job.Status.RUNNING, params={"embedding_set_id": es.pk})
    steps, notes = pipeline.plan_demo(n=50, include_real=False)
    assert "umap" not in _kinds(steps) and any("resumed" in n for n in notes)


def test_demo_task_job_creates_the_task_once(db):
    import numpy as np

    from tests.catalog.factories import make_survey
    from webapp.embeddings.models import EmbeddingSet, Encoder
    from webapp.embeddings.services.vectors import write_embedding_set

    survey = make_survey(name="sim-sdss", slug="sim-sdss", n=20)
    es = EmbeddingSet.objects.create(encoder=Encoder.objects.create(name="e", method="simclr", config={}))
    es.surveys.add(survey)
    ids = list(survey.galaxies.values_list("pk", flat=True))
    write_embedding_set(es, np.array(ids), np.zeros((len(ids), 4), np.float32))
    job = Job.objects.create(kind="demo_task", params={"embedding_set_id": es.pk})
    first = pipeline.run_demo_task_job(job, lambda *a, **k: None)
    second = pipeline.run_demo_task_job(job, lambda *a, **k: None)
    assert first == second and es.tasks.count() == 1
