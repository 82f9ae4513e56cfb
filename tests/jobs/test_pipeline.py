"""The demo pipeline: every step is a registered job kind with valid parameters, and
following it prints progress lines for a log file."""
import io

import pytest

from webapp.catalog.services.ingest import build_options
from webapp.jobs import pipeline
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


@pytest.mark.skipif(not pipeline.GZ1_DIR.exists(), reason="shared GZ1 data absent")
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
