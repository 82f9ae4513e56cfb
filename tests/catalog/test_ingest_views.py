"""Browser ingestion: roles, allowed roots (no path traversal), the ingest job handler."""
import os

import pytest

from tests.catalog.ingest_helpers import jpeg_folder
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import NoGoodRows, PathNotAllowed
from webapp.catalog.services.ingest_job import run_ingest_job
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]
URL = "/ingest/"


@pytest.fixture
def incoming(settings, tmp_path):
    """An allowed root with a small JPEG folder inside; everything else in tmp_path is outside."""
    root = tmp_path / "incoming"
    root.mkdir()
    settings.INGEST_ROOTS = [root]
    jpeg_folder(root / "batch1", ["a", "b", "c"])
    return root


def form(path, **extra):
    return {"format": "folder", "path": str(path), "survey": "Browser survey", "size": "16", **extra}


def test_get_shows_the_form_to_curators_only(role_clients, incoming):
    page = role_clients["curator"].get(URL)
    assert page.status_code == 200
    assert b'name="path"' in page.content and str(incoming).encode() in page.content
    assert role_clients["viewer"].get(URL).status_code == 403


@pytest.mark.parametrize("role, status", [("viewer", 403), ("labeler", 403), ("curator", 302), ("admin", 302)])
def test_post_by_role(role_clients, incoming, role, status):
    response = role_clients[role].post(URL, form(incoming / "batch1"))
    assert response.status_code == status
    jobs = list(Job.objects.all())
    if status == 302:
        assert [(j.kind, j.queue, j.status) for j in jobs] == [("ingest", "cpu", "queued")]
        assert response["Location"] == f"/jobs/{jobs[0].pk}/"
        assert jobs[0].params == {"format": "folder", "preset": "", "survey": "Browser survey", "size": 16,
                                  "path": str(incoming / "batch1")}
        assert jobs[0].launched_by.username == f"{role}-user"
    else:
        assert jobs == []


def test_anonymous_is_sent_to_login(role_clients, incoming):
    response = role_clients["anonymous"].post(URL, form(incoming / "batch1"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Job.objects.exists()


def test_paths_outside_the_allowed_roots_are_refused(role_clients, incoming, tmp_path):
    outside = jpeg_folder(tmp_path / "elsewhere", ["x"])
    os.symlink(outside, incoming / "link")
    client = role_clients["curator"]
    for path in ("/etc", str(outside), f"{incoming}/../elsewhere", str(incoming / "link"), "batch1", ""):
        response = client.post(URL, form(path))
        assert response.status_code == 400, path
        assert b"errorlist" in response.content
    response = client.post(URL, form(incoming / "batch1", catalog="../../elsewhere/catalog.csv"))
    assert response.status_code == 400 and b"not under an allowed ingest folder" in response.content
    assert not Job.objects.exists()


def test_preset_fills_the_survey_name(role_clients, incoming):
    response = role_clients["curator"].post(URL, {"format": "folder", "preset": "gz1_sdss", "path": str(incoming)})
    assert response.status_code == 302
    assert Job.objects.get().title == "Ingest SDSS GZ1"


def make_job(params):
    return services.create_job("ingest", params, dispatch=False)


def test_job_handler_ingests_and_returns_the_report(incoming):
    (incoming / "batch1" / "images" / "b.jpeg").write_bytes(b"junk")
    calls = []
    job = make_job({"format": "folder", "path": str(incoming / "batch1"), "survey": "Jobbed", "size": 16})
    result = run_ingest_job(job, lambda done, total, message="": calls.append((done, total)))
    assert (result["ingested"], result["found"], result["skipped"]) == (2, 3, 1)
    assert result["errors"] == ["images/b.jpeg: not a readable image (unknown format or corrupt header)"]
    assert result["errors_truncated"] == 0 and result["survey_id"] == Survey.objects.get().pk
    assert calls[-1] == (3, 3)
    assert Galaxy.objects.count() == 2


def test_job_result_truncates_long_error_lists(incoming):
    root = jpeg_folder(incoming / "many", [f"g{i}" for i in range(205)])
    for i in range(1, 205):
        (root / "images" / f"g{i}.jpeg").unlink()
    job = make_job({"format": "folder", "path": str(root), "survey": "Sparse", "size": 16})
    result = run_ingest_job(job, lambda *a: None)
    assert (result["ingested"], len(result["errors"]), result["errors_truncated"]) == (1, 200, 4)


def test_job_refuses_paths_outside_the_roots(incoming, tmp_path):
    job = make_job({"format": "folder", "path": str(tmp_path), "survey": "Nope"})
    with pytest.raises(PathNotAllowed):
        run_ingest_job(job, lambda *a: None)
    job = make_job({"format": "folder", "path": str(incoming / "batch1"), "survey": "Nope",
                    "catalog": "/etc/passwd"})
    with pytest.raises(PathNotAllowed):
        run_ingest_job(job, lambda *a: None)


def test_job_fails_clearly_when_nothing_is_good(incoming):
    for p in (incoming / "batch1" / "images").iterdir():
        p.write_bytes(b"")
    job = make_job({"format": "folder", "path": str(incoming / "batch1"), "survey": "Empty"})
    with pytest.raises(NoGoodRows):
        run_ingest_job(job, lambda *a: None)
    assert services.execute_job(job.pk, "w") == "failed"
    job.refresh_from_db()
    assert job.message.startswith("failed: no object of") and "3 problems" in job.message
    assert not Survey.objects.exists()
