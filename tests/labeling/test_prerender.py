"""Issue 16: the refill job pre-renders the images the labeling page preloads for the top of the
queue, so that the page's first request for them is a file read, never a render or a fetch."""
import io

import pytest
from PIL import Image

from tests.labeling.factories import make_embedding_set, make_task
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import remote_cutouts, render
from webapp.jobs.models import Job
from webapp.jobs.services import execute_job
from webapp.labeling.services import prerender, queue

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.refill_async,
              pytest.mark.usefixtures("fast_password_hashing")]


def preloaded_urls(item: dict) -> list[str]:
    """The URLs static/js/labeling.js preloadItem() asks for, read from a queue API item: the
    stage image and the reply's sprite atlas (thumbnail and bands), else the single images."""
    if item.get("strip"):
        return [item["image_url"], item["strip"]["url"]]
    return [item["image_url"], item["thumb_url"]] + [b["url"] for b in item["bands"]]


def single_image_urls(item: dict) -> list[str]:
    """The single-image URLs a queue item also carries (the page's fallback without an atlas)."""
    return [item["thumb_url"]] + [b["url"] for b in item["bands"]]


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def run_refill(client, task) -> Job:
    """Ask for the queue (which queues the refill job) and run the job as a worker would."""
    assert client.get(f"/api/tasks/{task.pk}/queue?n=10").status_code == 200
    job = Job.objects.get(kind=queue.REFILL_KIND)
    assert execute_job(job.pk, worker="test") == "succeeded"
    job.refresh_from_db()
    return job


def test_after_a_refill_the_first_items_images_are_files_and_serving_them_renders_nothing(role_clients,
                                                                                          monkeypatch):
    task = make_task(n=30, batch_size=12)
    client = role_clients["labeler"]
    job = run_refill(client, task)
    survey = task.surveys.get()
    variants = prerender.page_variants(survey)
    side = max(survey.image_shape[2:])
    stage = min(512, max(128, 2 * side))                          # the stage image: 2x the cutout
    assert variants == [("composite", stage), ("composite", 96), ("b0", 96), ("b1", 96), ("b2", 96)]
    assert job.result["prerendered"] == {"galaxies": 12, "rendered": 12 * 5, "fetched": 0, "failed": 0,
                                         "stopped": ""}
    items = client.get(f"/api/tasks/{task.pk}/queue?n=10").json()["items"]
    assert len(items) == 10
    for item in items:
        index = Galaxy.objects.get(pk=item["galaxy_id"]).image_index
        assert [render.thumb_path(survey, index, render.variant_name(b, s)).exists() for b, s in variants] \
            == [True] * 5

    def no_rendering(*args, **kwargs):
        raise AssertionError("a pre-rendered thumbnail was rendered again")

    monkeypatch.setattr(render, "render_pixels", no_rendering)
    monkeypatch.setattr(render, "read_images", no_rendering)
    strips = {item["strip"]["url"] for item in items}
    assert len(strips) == 1                      # one atlas for the reply: 1 request, not 4 per galaxy
    for item in items:
        assert len(item["strip"]["bands"]) == 3
        for url in preloaded_urls(item) + single_image_urls(item):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "immutable" in response["Cache-Control"]
            assert Image.open(io.BytesIO(body(response))).size in {(stage, stage), (96, 96), (10 * 96, 4 * 96)}


def test_a_second_refill_renders_only_what_is_missing(role_clients):
    task = make_task(n=30, batch_size=6)
    assert queue.refill(task) == 6
    first = prerender.prerender_queue(task)
    assert first["rendered"] == 6 * 5
    assert queue.refill(task) == 6
    assert prerender.prerender_queue(task)["rendered"] == 6 * 5    # the new batch only
    assert prerender.prerender_queue(task, limit=3)["galaxies"] == 3


def test_a_render_failure_never_fails_the_refill(role_clients, monkeypatch, caplog):
    task = make_task(n=30, batch_size=8)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(render, "render_missing_variants", broken)
    job = run_refill(role_clients["labeler"], task)
    assert job.result["added"] == 8 and job.result["prerendered"]["failed"] == 8
    assert "pre-rendering 8 thumbnails of survey" in caplog.text
    monkeypatch.setattr(prerender, "prerender_queue", broken)       # even outside the per-survey guard
    second = Job.objects.create(kind=queue.REFILL_KIND, queue="cpu", params={"task_id": task.pk})
    assert execute_job(second.pk, worker="test") == "succeeded"
    second.refresh_from_db()
    assert second.result["added"] == 8 and second.result["prerendered"] == {"error": "OSError: disk full"}


def remote_task(n: int = 20, batch: int = 10):
    """A task on a survey without an image store whose cutouts come from a (never reached) service."""
    survey = Survey.objects.create(name="Remote", slug="remote", status=Survey.Status.READY, n_galaxies=n,
                                   cutout_url_template="http://127.0.0.1:9/c?ra={ra}&dec={dec}&size={size}")
    Galaxy.objects.bulk_create([Galaxy(survey=survey, source_id=f"R{i}", ra=10 + 0.01 * i, dec=-5.0, image_index=i)
                                for i in range(n)])
    task = make_task(name="Remote task", surveys=[survey], embedding_set=make_embedding_set([survey]))
    assert queue.refill(task, batch=batch) == batch
    return task


@pytest.fixture
def fake_service(monkeypatch, settings):
    """remote_cutouts.fetch_image replaced by a counter that answers a JPEG (or fails)."""
    remote_cutouts.reset_state()
    settings.CUTOUT_NEGATIVE_TTL = 0
    calls = {"n": 0, "fail": False}
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(buf, format="JPEG")

    def fetch(url, size):
        calls["n"] += 1
        if calls["fail"]:
            raise remote_cutouts.FetchError("connection failed")
        return buf.getvalue(), "image/jpeg"

    monkeypatch.setattr(remote_cutouts, "fetch_image", fetch)
    yield calls
    remote_cutouts.reset_state()


def test_remote_cutouts_are_fetched_one_at_a_time_for_a_bounded_number_of_galaxies(fake_service, monkeypatch):
    task = remote_task()
    monkeypatch.setattr(prerender, "PRERENDER_REMOTE_ITEMS", 4)
    result = prerender.prerender_queue(task)
    assert fake_service["n"] == 4 * 2 and result["fetched"] == 8 and result["failed"] == 0
    survey = task.surveys.get()
    first = Galaxy.objects.get(pk=prerender.top_of_queue(task, 1)[0])
    for size in (512, 96):
        assert remote_cutouts.cache_path(remote_cutouts.cutout_url(survey, first, size)).exists()
    assert prerender.page_variants(survey) == [("composite", 512), ("composite", 96)]   # no band strip


def test_a_failing_cutout_service_is_left_alone_after_a_few_failures(fake_service):
    task = remote_task()
    fake_service["fail"] = True
    result = prerender.prerender_queue(task)
    assert fake_service["n"] == prerender.REMOTE_FAILURES
    assert result["failed"] == prerender.REMOTE_FAILURES and result["fetched"] == 0


def test_the_time_budget_stops_pre_rendering(role_clients):
    task = make_task(n=30, batch_size=8)
    queue.refill(task)
    result = prerender.prerender_queue(task, seconds=-1)
    assert result["rendered"] == 0 and result["stopped"] == "time budget of -1 s spent"


@pytest.mark.parametrize("side, stage", [(16, 128), (64, 128), (100, 200), (256, 512), (424, 512)])
def test_the_stage_image_is_twice_the_cutout_within_128_to_512_px(side, stage):
    """A 512 px render of a 64 px cutout cost 29 ms and 232 KB for no added detail (the browser scales)."""
    from tests.catalog.factories import make_survey
    survey = make_survey(n=2, size=side)
    assert prerender.stage_px(survey) == stage
    assert prerender.page_thumbs(survey)["image_url"] == stage


def test_remote_surveys_keep_the_full_stage_size():
    assert prerender.stage_px(remote_task().surveys.get()) == 512
