"""Remote cutouts: template validation, fetch with timeouts and caps, LRU disk cache, bounded
concurrency, placeholders, and the thumbnail/galaxy pages of a survey without a local store.

Everything is fetched from tests/cutout_server.py on 127.0.0.1; nothing reaches the internet."""
from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from PIL import Image

from tests.cutout_server import CutoutServer, render_cutout
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import remote_cutouts as rc
from webapp.catalog.services import browse, render

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cutout_server():
    server = CutoutServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(cutout_server, settings):
    """The local cutout server in "ok" mode, fresh fetch state and short test timeouts."""
    cutout_server.reset("ok")
    rc.reset_state()
    settings.CUTOUT_CONNECT_TIMEOUT = 1.0
    settings.CUTOUT_READ_TIMEOUT = 2.0
    settings.CUTOUT_MAX_BYTES = 1024 * 1024
    settings.CUTOUT_CONCURRENCY = 4
    settings.CUTOUT_SLOT_WAIT = 0.5
    settings.CUTOUT_NEGATIVE_TTL = 60
    settings.CUTOUT_CACHE_BYTES = 64 * 1024 * 1024
    yield cutout_server
    cutout_server.reset("ok")
    rc.reset_state()


def remote_survey(template: str, n: int = 6, slug: str = "remote", **fields) -> Survey:
    """A catalogue-only survey (no image store) whose cutouts come from ``template``."""
    fields = {"bands": ["g", "r", "z"], **fields}
    survey = Survey.objects.create(name=f"Remote {slug}", slug=slug, status=Survey.Status.READY, n_galaxies=n,
                                   cutout_url_template=template, cutout_layer="ls-dr10", **fields)
    Galaxy.objects.bulk_create([Galaxy(survey=survey, source_id=f"LS{i:04d}", ra=180.0 + 0.01 * i,
                                       dec=-1.0 + 0.02 * i, image_index=i) for i in range(n)])
    return survey


def url_for(server, i: int, size: int = 96) -> str:
    return (f"{server.base}/cutout.jpg?ra={round(180.0 + 0.01 * i, 7)}&dec={round(-1.0 + 0.02 * i, 7)}"
            f"&size={size}&layer=ls-dr10&pixscale={round(64.0 / size, 5)}")


def body(response) -> bytes:
    """The bytes of a response, a FileResponse's too."""
    # The test client closes a streamed response (and its file) at the end of the iteration.
    return b"".join(response.streaming_content) if response.streaming else response.content


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# ----------------------------------------------------------------- templates

@pytest.mark.parametrize("template", list(rc.EXAMPLE_TEMPLATES.values()) + [
    "http://127.0.0.1:8000/c/{source_id}.png",
    "https://example.org/cut?ra={ra:.6f}&dec={dec:.6f}&w={size}",
    "https://example.org/{{literal}}?ra={ra}&dec={dec}",
])
def test_good_templates_validate(template):
    assert rc.validate_template("  " + template + " ") == template


@pytest.mark.parametrize("template, message", [
    ("https://x.org/c?ra={ra}&dec={dec}&band={band}", "unknown placeholder {band}"),
    ("https://x.org/c?ra={}&dec={dec}", "unknown placeholder {}"),
    ("https://x.org/c?ra={ra.real}&dec={dec}", "unknown placeholder {ra.real}"),
    ("https://x.org/c?ra={ra!r}&dec={dec}", "conversions are not allowed"),
    ("https://x.org/c?ra={ra:q}&dec={dec}", "cannot read the template"),
    ("https://x.org/c?ra={ra&dec={dec}", "cannot read the template"),
    ("ftp://x.org/c?ra={ra}&dec={dec}", "http:// or https://"),
    ("javascript:alert(1)//{ra}{dec}", "http:// or https://"),
    ("/viewer/cutout.jpg?ra={ra}&dec={dec}", "http:// or https://"),
    ("https://x.org/c?size={size}", "needs {ra} and {dec}"),
    ("https://x.org/c?ra={ra}&size={size}", "needs {ra} and {dec}"),
    ("https://x.org/" + "a" * 600 + "?ra={ra}&dec={dec}", "longer than"),
])
def test_bad_templates_are_rejected_with_a_clear_message(template, message):
    with pytest.raises(rc.TemplateError) as err:
        rc.validate_template(template)
    assert message in str(err.value)


@pytest.mark.django_db
def test_model_validation_rejects_a_bad_template():
    survey = Survey(name="x", slug="x", cutout_url_template="https://x.org/?ra={ra}&dec={dec}&q={flux}")
    with pytest.raises(ValidationError) as err:
        survey.full_clean()
    assert "unknown placeholder {flux}" in str(err.value.message_dict["cutout_url_template"])


@pytest.mark.django_db
def test_cutout_url_fills_every_placeholder():
    survey = Survey(cutout_url_template="https://x.org/c?ra={ra}&dec={dec}&size={size}&layer={layer}"
                                        "&pixscale={pixscale}&id={source_id}",
                    cutout_layer="ls-dr10", cutout_field_arcsec=40.0)
    galaxy = Galaxy(source_id="J1/2 a&b", ra=150.12345678912, dec=-2.5, image_index=0)
    assert rc.cutout_url(survey, galaxy, 160) == (
        "https://x.org/c?ra=150.1234568&dec=-2.5&size=160&layer=ls-dr10&pixscale=0.25&id=J1%2F2%20a%26b")
    survey.cutout_field_arcsec = None  # the default field
    assert "pixscale=0.66667" in rc.cutout_url(survey, galaxy, 96)
    with pytest.raises(rc.FetchError):
        rc.cutout_url(survey, Galaxy(source_id="x", ra=None, dec=None, image_index=1), 96)


# ----------------------------------------------------------------- fetch and cache

@pytest.mark.django_db
def test_fetch_returns_the_servers_image_and_a_second_request_is_a_cache_hit(server):
    url = url_for(server, 2)
    first = rc.get_cutout(url, 96)
    assert (first.ok, first.content_type) == (True, "image/jpeg")
    assert first.data == render_cutout(180.02, -0.96, 96)  # passed through unchanged
    assert decoded(first.data).size == (96, 96)
    assert server.count == 1
    assert rc.cache_path(url).read_bytes() == first.data
    second = rc.get_cutout(url, 96)
    assert second == first
    assert server.count == 1  # no HTTP call


@pytest.mark.django_db
def test_a_gzipped_chunked_answer_is_read_whole(server):
    server.reset("chunked")
    cut = rc.get_cutout(url_for(server, 3), 96)
    assert cut.ok and cut.data == render_cutout(180.03, -0.94, 96)


@pytest.mark.django_db
def test_an_image_of_the_wrong_size_is_resized(server):
    url = url_for(server, 1, size=64).replace("size=64", "size=40")  # the server answers 40 px
    cut = rc.get_cutout(url, 64)
    assert cut.ok and decoded(cut.data).size == (64, 64) and cut.content_type == "image/jpeg"


@pytest.mark.django_db
def test_timeout_answers_the_placeholder_fast_and_is_not_cached(server, settings):
    server.reset("slow")
    server.delay = 3.0
    settings.CUTOUT_READ_TIMEOUT = 0.3
    url = url_for(server, 0)
    start = time.perf_counter()
    cut = rc.get_cutout(url, 96)
    elapsed = time.perf_counter() - start
    assert (cut.ok, cut.reason, cut.content_type) == (False, "timeout", "image/png")
    assert elapsed < 1.5
    assert decoded(cut.data).size == (96, 96)
    assert cut.data == rc.placeholder_png(96)
    assert rc.cache_usage() == (0, 0)
    # negative cache: the URL is not asked again for a while
    assert rc.get_cutout(url, 96).reason == "failed recently"
    assert server.count == 1


@pytest.mark.django_db
def test_a_body_that_drips_past_the_read_deadline_times_out(server, settings):
    server.reset("drip")
    server.delay = 0.05  # each byte within the socket timeout, the whole body far beyond the deadline
    settings.CUTOUT_READ_TIMEOUT = 0.4
    start = time.perf_counter()
    cut = rc.get_cutout(url_for(server, 3), 96)
    assert (cut.ok, cut.reason) == (False, "timeout")
    assert time.perf_counter() - start < 1.5


@pytest.mark.django_db
@pytest.mark.parametrize("mode, reason", [
    ("404", "HTTP 404"), ("500", "HTTP 500"), ("garbage", "not a decodable image"),
    ("html", "content type text/html"), ("huge", "too large"),
])
def test_bad_answers_give_the_placeholder_and_nothing_cached(server, mode, reason, caplog):
    server.reset(mode)
    cut = rc.get_cutout(url_for(server, 4), 96)
    assert (cut.ok, cut.reason, cut.content_type) == (False, reason, "image/png")
    assert rc.cache_usage() == (0, 0)
    # Logged once for this host and kind, however many galaxies fail.
    rc.get_cutout(url_for(server, 5), 96)
    assert server.count == 2
    assert len([r for r in caplog.records if "remote cutout unavailable" in r.getMessage()]) == 1


@pytest.mark.django_db
def test_connection_refused_gives_the_placeholder(server):
    probe = CutoutServer()
    port = probe.port
    probe.httpd.server_close()  # nothing listens there now
    cut = rc.get_cutout(f"http://127.0.0.1:{port}/c?ra=1&dec=2", 96)
    assert (cut.ok, cut.reason) == (False, "connection failed")


@pytest.mark.django_db
def test_failure_is_retried_after_the_negative_ttl(server, settings):
    settings.CUTOUT_NEGATIVE_TTL = 0  # no negative cache
    server.reset("500")
    url = url_for(server, 1)
    assert not rc.get_cutout(url, 96).ok
    server.mode = "ok"
    assert rc.get_cutout(url, 96).ok
    assert server.count == 2


@pytest.mark.django_db
def test_lru_eviction_keeps_the_recently_used_files_under_the_cap(server, settings):
    size_each = len(rc.get_cutout(url_for(server, 0), 96).data)
    for i in range(1, 4):
        rc.get_cutout(url_for(server, i), 96)
    paths = [rc.cache_path(url_for(server, i)) for i in range(4)]
    for age, path in zip((400, 300, 200, 100), paths):  # 0 is the oldest, 3 the newest
        os.utime(path, (time.time() - age, time.time() - age))
    assert rc.get_cutout(url_for(server, 0), 96).ok  # a hit: 0 becomes the most recently used
    assert server.count == 4
    settings.CUTOUT_CACHE_BYTES = int(size_each * 3.5)
    rc.get_cutout(url_for(server, 4), 96)  # the 5th file: over the cap, evict down to 90 %
    files, total = rc.cache_usage()
    assert total <= settings.CUTOUT_CACHE_BYTES
    assert [p.exists() for p in paths] == [True, False, False, True]
    assert rc.cache_path(url_for(server, 4)).exists() and files == 3


def _hammer_cache(worker: int, n: int) -> None:
    """Child process: store n cutouts and re-read earlier ones while the other child does the same."""
    for i in range(n):
        rc.store(f"http://cache.test/{worker}/{i}", render_cutout(float(worker), float(i), 64))
        for j in range(0, i, 7):
            data = rc.read_cached(f"http://cache.test/{1 - worker}/{j}")
            if data is not None:
                decoded(data)  # a whole image or nothing, never half a file


@pytest.mark.slow
def test_two_processes_share_the_cache_under_its_cap(settings):
    import multiprocessing
    rc.reset_state()
    one = len(render_cutout(0.0, 0.0, 64))
    settings.CUTOUT_CACHE_BYTES = cap = 40 * one
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer_cache, args=(w, 120)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    files, total = rc.cache_usage()
    # Each process sweeps after every cap/50 bytes it writes, so the overshoot is a few files.
    assert 0 < files and total <= cap + 2 * (cap // rc.SWEEP_FRACTION + 2 * one)
    assert not [p for p in rc.cache_root().rglob("*") if p.name.endswith(".partial")]
    for path in rc.cache_root().rglob("*.img"):
        assert decoded(path.read_bytes()).size == (64, 64)


@pytest.mark.django_db
def test_concurrency_is_bounded_and_a_saturated_process_answers_busy(server, settings):
    server.reset("slow")
    server.delay = 0.6
    settings.CUTOUT_CONCURRENCY = 2
    settings.CUTOUT_SLOT_WAIT = 0.05
    results, times = {}, {}

    def fetch(i):
        start = time.perf_counter()
        results[i] = rc.get_cutout(url_for(server, i), 96)
        times[i] = time.perf_counter() - start

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sorted(i for i, r in results.items() if r.ok)
    busy = sorted(i for i, r in results.items() if r.reason == "busy")
    assert len(ok) == 2 and len(busy) == 4
    assert server.max_in_flight == 2 and server.count == 2
    assert max(times[i] for i in busy) < 0.5  # answered without waiting for the slow fetches


@pytest.mark.django_db
def test_waiting_requests_share_the_slots_and_never_exceed_them(server, settings):
    server.reset("slow")
    server.delay = 0.2
    settings.CUTOUT_CONCURRENCY = 2
    settings.CUTOUT_SLOT_WAIT = 5.0
    threads = [threading.Thread(target=rc.get_cutout, args=(url_for(server, i), 96)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.count == 6 and server.max_in_flight == 2
    assert rc.cache_usage()[0] == 6


# ----------------------------------------------------------------- pages

@pytest.fixture
def viewer(role_clients):
    return role_clients["viewer"]


@pytest.mark.django_db
def test_thumbnail_view_serves_the_remote_cutout_with_etag_and_revalidates_without_fetching(server, viewer):
    survey = remote_survey(server.template)
    galaxy = Galaxy.objects.get(survey=survey, image_index=2)
    resp = viewer.get(f"/thumbs/{galaxy.pk}.png?size=96")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/jpeg"
    assert resp.content == render_cutout(180.02, -0.96, 96)
    assert resp["Cache-Control"] == "public, max-age=86400"
    assert server.requests == [url_for(server, 2).replace(server.base, "")]
    again = viewer.get(f"/thumbs/{galaxy.pk}.png?size=96", HTTP_IF_NONE_MATCH=resp["ETag"])
    assert again.status_code == 304
    assert viewer.get(f"/thumbs/{galaxy.pk}.png?size=96&band=1").content == resp.content  # colour only
    assert server.count == 1


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["500", "404", "garbage", "slow"])
def test_thumbnail_view_answers_200_with_the_placeholder_on_failure(server, viewer, settings, mode):
    server.reset(mode)
    server.delay = 3.0
    settings.CUTOUT_READ_TIMEOUT = 0.3
    galaxy = Galaxy.objects.get(survey=remote_survey(server.template), image_index=0)
    resp = viewer.get(f"/thumbs/{galaxy.pk}.png?size=128")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert resp.content == rc.placeholder_png(128)
    assert resp["Cache-Control"] == "public, max-age=60" and not resp.has_header("ETag")


@pytest.mark.django_db
def test_a_survey_without_store_or_template_shows_a_placeholder(viewer):
    survey = Survey.objects.create(name="Bare", slug="bare", status=Survey.Status.READY, n_galaxies=1)
    galaxy = Galaxy.objects.create(survey=survey, source_id="a", ra=1.0, dec=2.0, image_index=0)
    resp = viewer.get(f"/thumbs/{galaxy.pk}.png")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert decoded(resp.content).size == (render.DEFAULT_THUMB_SIZE,) * 2


@pytest.mark.django_db
def test_grid_and_galaxy_page_of_a_remote_survey(server, viewer):
    survey = remote_survey(server.template, cutout_field_arcsec=40.0)
    galaxy = Galaxy.objects.get(survey=survey, image_index=1)
    grid = viewer.get(f"/surveys/{survey.slug}/")
    assert grid.status_code == 200
    atlas_url = grid.context["atlas"].url  # the six cells are drawn from one atlas of the six cutouts
    assert len(grid.context["cells"]) == 6 and grid.content.decode().count('class="sprite"') == 6
    atlas_img = decoded(body(viewer.get(atlas_url)))
    assert atlas_img.size == (6 * 96, 96)
    cell = np.asarray(atlas_img, dtype=np.int16)[:, 96:192]           # a JPEG: equal to its precision
    cutout = np.asarray(decoded(render_cutout(180.01, -0.98, 96)).convert("RGB"), dtype=np.int16)
    assert np.abs(cell - cutout).mean() < 3.0
    page = viewer.get(f"/galaxies/{galaxy.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    composite_url = browse.thumb_url(galaxy, survey, size=320)
    assert composite_url.startswith(f"/thumbs/{galaxy.pk}/composite-320-") and composite_url in html
    assert "/b0-" not in html and "/b1-" not in html  # no per-band strip: the remote service gives one colour image
    assert "Cutout from 127.0.0.1" in html and "40.0″ across" in html
    composite = viewer.get(composite_url)
    assert composite.status_code == 200 and decoded(body(composite)).size == (320, 320)
    assert composite["Cache-Control"] == "public, max-age=31536000, immutable"
    assert server.requests[-1].endswith("size=320&layer=ls-dr10&pixscale=0.125")
    api = viewer.get(f"/api/galaxies/{galaxy.pk}/")
    assert api.status_code == 200


@pytest.mark.django_db
def test_local_store_wins_over_a_template(server, viewer):
    from tests.catalog.factories import make_survey
    survey = make_survey(n=3, size=16, cutout_url_template=server.template)
    galaxy = Galaxy.objects.get(survey=survey, image_index=1)
    resp = viewer.get(f"/thumbs/{galaxy.pk}.png?size=96")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert resp.content == render.thumbnail_png(survey, 1, 96)
    assert server.count == 0


@pytest.mark.django_db
def test_mosaic_tiles_use_only_cached_remote_cutouts(server):
    survey = remote_survey(server.template, n=3)
    galaxies = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
    assert render.galaxy_thumbnail(survey, galaxies[0], 48).ok  # fetched and cached
    count = server.count
    cached = render.galaxy_thumbnail(survey, galaxies[0], 48, fetch=False)
    missing = render.galaxy_thumbnail(survey, galaxies[1], 48, fetch=False)
    assert cached.ok and not missing.ok and server.count == count


# ----------------------------------------------------------------- setting the template

@pytest.mark.django_db
def test_set_cutout_url_command_sets_validates_and_clears(server, capsys):
    survey = remote_survey("", slug="cmd")
    call_command("set_cutout_url", "cmd", rc.EXAMPLE_TEMPLATES["Legacy Survey viewer (DR10)"],
                 "--layer", "ls-dr9", "--field-arcsec", "50")
    survey.refresh_from_db()
    assert (survey.cutout_url_template, survey.cutout_layer, survey.cutout_field_arcsec) == (
        rc.EXAMPLE_TEMPLATES["Legacy Survey viewer (DR10)"], "ls-dr9", 50.0)
    assert survey.remote_pixels
    with pytest.raises(CommandError, match=r"unknown placeholder \{band\}"):
        call_command("set_cutout_url", "cmd", "https://x.org/?ra={ra}&dec={dec}&b={band}")
    with pytest.raises(CommandError, match="no survey"):
        call_command("set_cutout_url", "nope", server.template)
    survey.refresh_from_db()
    assert survey.cutout_layer == "ls-dr9"  # the rejected run changed nothing
    call_command("set_cutout_url", str(survey.pk), "")
    survey.refresh_from_db()
    assert survey.cutout_url_template == "" and not survey.remote_pixels


@pytest.mark.django_db
def test_set_cutout_url_works_on_an_imported_catalogue_only_survey(server, role_clients):
    """An import_embeddings survey has no bands; setting its template must not trip on that."""
    survey = remote_survey("", slug="imported", bands=[])
    call_command("set_cutout_url", "imported", server.template)
    survey.refresh_from_db()
    assert survey.cutout_url_template == server.template and survey.bands == []
    response = role_clients["curator"].post(f"/surveys/{survey.slug}/cutouts",
                                            {"cutout_url_template": "", "cutout_layer": "x"})
    survey.refresh_from_db()
    assert response.status_code in (200, 302) and survey.cutout_url_template == ""


@pytest.mark.django_db
def test_curator_form_saves_a_template_and_rejects_a_bad_one(server, role_clients):
    survey = remote_survey("", slug="form")
    url = f"/surveys/{survey.slug}/cutouts"
    assert role_clients["viewer"].get(url).status_code == 403
    curator = role_clients["curator"]
    assert curator.get(url).status_code == 200
    bad = curator.post(url, {"cutout_url_template": "gopher://x.org/{ra}/{dec}", "cutout_layer": "x"})
    assert bad.status_code == 400 and "http:// or https://" in bad.content.decode()
    survey.refresh_from_db()
    assert (survey.cutout_url_template, survey.cutout_layer) == ("", "ls-dr10")
    good = curator.post(url, {"cutout_url_template": server.template, "cutout_layer": "ls-dr10",
                              "cutout_field_arcsec": "48"})
    assert good.status_code == 302
    survey.refresh_from_db()
    assert (survey.cutout_url_template, survey.cutout_layer, survey.cutout_field_arcsec) == (
        server.template, "ls-dr10", 48.0)
    preview = curator.get(url).content.decode()
    assert preview.count('src="/thumbs/') == 4


def test_placeholder_is_a_small_png_with_text():
    img = np.asarray(decoded(rc.placeholder_png(96)).convert("L"))
    assert img.shape == (96, 96)
    assert (img[30:66, 10:86] > 100).sum() > 30  # the grey text pixels
    assert len(rc.placeholder_png(96)) < 4000


def test_env_float_parses_and_rejects(monkeypatch):
    from webapp import env
    monkeypatch.setenv("X_SECONDS", "2.5")
    assert env.env_float("X_SECONDS", 1.0) == 2.5
    for raw in ("soon", "nan", "inf"):
        monkeypatch.setenv("X_SECONDS", raw)
        with pytest.raises(env.ConfigError):
            env.env_float("X_SECONDS", 1.0)
    monkeypatch.setenv("X_SECONDS", "0.001")
    with pytest.raises(env.ConfigError):
        env.env_float("X_SECONDS", 1.0, minimum=0.01)


@pytest.mark.django_db
def test_survey_list_offers_remote_cutouts_to_curators_and_no_prerender_without_a_store(server, role_clients):
    survey = remote_survey(server.template, slug="listed")
    html = role_clients["curator"].get("/surveys/").content.decode()
    assert f'href="/surveys/{survey.slug}/cutouts"' in html
    assert f"/surveys/{survey.slug}/prerender" not in html  # nothing local to pre-render
    assert f'href="/surveys/{survey.slug}/cutouts"' not in role_clients["viewer"].get("/surveys/").content.decode()


def test_admin_edits_the_remote_cutout_fields():
    from django.contrib import admin
    fields = [f for _, opts in admin.site._registry[Survey].fieldsets for f in opts["fields"]]
    assert {"cutout_url_template", "cutout_layer", "cutout_field_arcsec"} <= set(fields)


@pytest.mark.django_db
def test_prerender_job_refuses_a_survey_without_a_local_store(server):
    from types import SimpleNamespace
    survey = remote_survey(server.template, slug="noprerender")
    with pytest.raises(ValueError, match="no local image store"):
        render.run_prerender_job(SimpleNamespace(params={"survey_id": survey.pk}), progress=None)
    assert server.count == 0
