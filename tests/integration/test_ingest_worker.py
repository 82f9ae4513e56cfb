"""An "ingest" job from the browser path through a real ``celery worker`` process."""
import pytest

from tests.catalog.ingest_helpers import jpeg_folder
from tests.integration.conftest import wait_for_job
from webapp.catalog.models import Galaxy, Survey
from webapp.jobs import services

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_worker_ingests_a_folder_and_reports_the_bad_file(celery_worker_proc, settings):
    # DATA_DIR/incoming is an allowed root by default, for this process and for the worker
    # (which gets LATENTSKY_DATA_DIR = this test's DATA_DIR).
    root = jpeg_folder(settings.DATA_DIR / "incoming" / "night1", ["n1", "n2", "n3", "n4"])
    (root / "images" / "n3.jpeg").write_bytes(b"\xff\xd8\xff truncated")
    job = services.create_job("ingest", {"format": "folder", "path": str(root), "survey": "Night one",
                                         "size": 16})
    done = wait_for_job(job.pk, proc=celery_worker_proc)
    assert (done.status, done.progress) == ("succeeded", 1.0), done.error
    survey = Survey.objects.get(name="Night one")
    assert (survey.status, survey.n_galaxies, survey.image_shape) == ("ready", 3, [3, 3, 16, 16])
    assert list(Galaxy.objects.filter(survey=survey).values_list("source_id", flat=True)) == ["n1", "n2", "n4"]
    assert (done.result["ingested"], done.result["skipped"]) == (3, 1)
    assert done.result["errors"][0].startswith("images/n3.jpeg: ")
    assert survey.store_abspath.is_file()
