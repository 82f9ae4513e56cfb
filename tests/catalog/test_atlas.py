"""Sprite atlases: pixels equal the member thumbnails at their offsets, one atlas per grid page,
clear 400s for bad requests, failed members never immutable nor cached, X-Accel-Redirect mode."""
from __future__ import annotations

import io
import re
from html import unescape

import numpy as np
import pytest
from PIL import Image

from tests.catalog.factories import make_survey
from tests.catalog.test_remote_cutouts import body, cutout_server, remote_survey, server  # noqa: F401 (fixtures)
from webapp.catalog.models import Galaxy
from webapp.catalog.services import atlas, remote_cutouts, render

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def viewer(role_clients):
    return role_clients["viewer"]


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_tiles(atlas_jpeg: bytes, expected: list[bytes], size: int):
    """The atlas holds each expected image at (i % COLUMNS, i // COLUMNS) x size px, to JPEG's
    precision: closer to its own member than to any other member."""
    img = pixels(atlas_jpeg).astype(np.int16)
    columns, rows = atlas.grid_shape(len(expected))
    assert img.shape == (rows * size, columns * size, 3)
    members = [pixels(data).astype(np.int16) for data in expected]
    for i in range(len(expected)):
        x, y = (i % columns) * size, (i // columns) * size
        cell = img[y:y + size, x:x + size]
        error = [float(np.abs(cell - m).mean()) for m in members]
        assert error[i] < 3.0, f"member {i}: mean error {error[i]:.2f} of 255"
        assert error[i] == min(error), f"member {i} is not where it belongs"


def test_atlas_is_the_member_thumbnails_pasted_at_their_offsets(viewer):
    survey = make_survey(n=25, size=16)
    other = make_survey(name="Other", slug="other", n=4, size=16, seed=3)
    order = [17, 3, 24, 0, 9, 11, 5, 22, 1, 14, 8, 2]  # page order, not catalogue order
    galaxies = {g.image_index: g for g in Galaxy.objects.filter(survey=survey)}
    extra = Galaxy.objects.get(survey=other, image_index=2)  # a second survey in one atlas (search results)
    members = [(galaxies[i], survey) for i in order] + [(extra, other)]
    sprites = atlas.layout(members, 48)
    resp = viewer.get(sprites.url)
    assert resp.status_code == 200 and resp["Content-Type"] == "image/jpeg" and resp["Cache-Control"] == IMMUTABLE
    data = body(resp)
    assert_tiles(data, [render.thumbnail_png(survey, i, 48) for i in order] + [render.thumbnail_png(other, 2, 48)], 48)
    assert (sprites.columns, sprites.rows, sprites.background_size) == (10, 2, "1000% 200%")
    # background-position p% lines tile (c, r) of 10 x 2 up with p = c / 9, r / 1.
    assert sprites.positions[:2] == ["0% 0%", "11.1111% 0%"] and sprites.positions[9:13] == [
        "100% 0%", "0% 100%", "11.1111% 100%", "22.2222% 100%"]
    # Cached on disk: a second request builds nothing.
    digest = re.search(r"/thumbs/atlas/([0-9a-f]+)\.jpg", sprites.url).group(1)
    assert atlas.atlas_path(digest).read_bytes() == data


def test_a_cached_atlas_is_served_without_rebuilding(viewer, monkeypatch):
    survey = make_survey(n=5, size=16)
    url = atlas.layout([(g, survey) for g in Galaxy.objects.filter(survey=survey).order_by("image_index")], 32).url
    first = body(viewer.get(url))
    monkeypatch.setattr(atlas, "member_tiles", lambda *a: pytest.fail("rebuilt a cached atlas"))
    assert body(viewer.get(url)) == first


def test_atlas_key_changes_with_members_order_size_and_reingest():
    survey = make_survey(n=4, size=16)
    gs = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
    members = [(g, survey) for g in gs]
    digests = {atlas.atlas_digest(members, 96), atlas.atlas_digest(members[::-1], 96),
               atlas.atlas_digest(members[:3], 96), atlas.atlas_digest(members, 72)}
    survey.image_checksum = "1" * 64
    digests.add(atlas.atlas_digest(members, 96))
    assert len(digests) == 5


def test_the_grid_page_draws_its_100_cells_from_one_atlas(viewer):
    survey = make_survey(n=130, size=16)
    resp = viewer.get(f"/surveys/{survey.slug}/")
    html = resp.content.decode()
    grid = html[html.index('id="galaxy-grid"'):html.index('<nav class="pager">')]
    atlas_urls = set(re.findall(r"/thumbs/atlas/[^'\"\s)]+", grid))
    assert len(atlas_urls) == 1 and "<img" not in grid
    assert grid.count('class="sprite" role="img"') == 100 and grid.count('aria-label="OBJ') == 100
    assert grid.count('<a class="cell" href="/galaxies/') == 100  # a link and a title per cell
    url = unescape(atlas_urls.pop())
    ids = [c["galaxy"].pk for c in resp.context["cells"]]
    assert url.endswith("&ids=" + ",".join(map(str, ids)))
    image = viewer.get(url)
    assert image["Cache-Control"] == IMMUTABLE
    assert_tiles(body(image), [render.thumbnail_png(survey, i, 96) for i in range(100)], 96)


@pytest.mark.parametrize("query, message", [
    ("size=96&ids=" + ",".join(str(i) for i in range(1, 202)), "at most 200"),
    ("size=96&ids=1,999999", "unknown galaxy id 999999"),
    ("size=96&size=72&ids=1,2", "mixed sizes"),
    ("ids=1,2", "size is required"),
    ("size=400&ids=1,2", "at most 160 px"),
    ("size=96&ids=1,x", "comma-separated galaxy ids"),
    ("size=96&ids=1,1", "appears twice"),
    ("size=96", "ids is required"),
    ("size=96&ids=1:b7", "band index 7 out of range"),
    ("size=96&ids=1:r", "id:bN for band N"),
    ("size=96&ids=1:b0,1:b0", "appears twice"),
])
def test_bad_atlas_requests_are_a_clear_400(viewer, query, message):
    survey = make_survey(n=3, size=16)
    first = Galaxy.objects.filter(survey=survey).order_by("pk").first().pk
    query = (query.replace("ids=1,1", f"ids={first},{first}").replace("ids=1,2", f"ids={first},{first + 1}")
             .replace("ids=1,", f"ids={first},").replace("ids=1:", f"ids={first}:")
             .replace(",1:b0", f",{first}:b0"))   # real ids: PostgreSQL's sequences do not restart at 1
    resp = viewer.get(f"/thumbs/atlas/{'0' * 32}.jpg?{query}")
    assert resp.status_code == 400 and message in resp.content.decode(), resp.content


def test_a_stale_atlas_key_is_404(viewer):
    survey = make_survey(n=3, size=16)
    url = atlas.layout([(g, survey) for g in Galaxy.objects.filter(survey=survey)], 32).url
    assert viewer.get(url).status_code == 200
    type(survey).objects.filter(pk=survey.pk).update(image_checksum="e" * 64)
    assert viewer.get(url).status_code == 404


def test_accel_redirect_serves_a_complete_atlas_through_nginx(viewer, settings):
    settings.ACCEL_REDIRECT = "/protected/"
    survey = make_survey(n=3, size=16)
    url = atlas.layout([(g, survey) for g in Galaxy.objects.filter(survey=survey)], 32).url
    resp = viewer.get(url)
    assert resp.content == b"" and resp["Cache-Control"] == IMMUTABLE
    assert resp["X-Accel-Redirect"].startswith("/protected/atlases/")
    assert (settings.DATA_DIR / "cache" / resp["X-Accel-Redirect"].removeprefix("/protected/")).exists()


def test_failed_remote_members_show_the_placeholder_and_the_atlas_is_neither_immutable_nor_cached(
        server, viewer, settings):
    settings.CUTOUT_NEGATIVE_TTL = 0
    settings.ACCEL_REDIRECT = "/protected/"
    remote = remote_survey(server.template, n=3)
    local = make_survey(n=2, size=16)
    members = [(g, remote) for g in Galaxy.objects.filter(survey=remote).order_by("image_index")]
    members.insert(1, (Galaxy.objects.get(survey=local, image_index=1), local))
    url = atlas.layout(members, 64).url
    server.reset("500")
    failed = viewer.get(url)
    assert failed.status_code == 200 and "X-Accel-Redirect" not in failed
    assert failed["Cache-Control"] == "public, max-age=60"
    placeholder = remote_cutouts.placeholder_png(64)
    assert_tiles(body(failed), [placeholder, render.thumbnail_png(local, 1, 64), placeholder, placeholder], 64)
    assert not list(atlas.cache_root().rglob("*.jpg"))  # nothing cached: a later request completes it
    server.reset("ok")
    done = viewer.get(url)
    assert done["Cache-Control"] == IMMUTABLE and done["X-Accel-Redirect"].startswith("/protected/atlases/")
    settings.ACCEL_REDIRECT = ""
    cut = [remote_cutouts.read_cached(remote_cutouts.cutout_url(remote, g, 64)) for g, s in members if s == remote]
    assert_tiles(body(viewer.get(url)), [cut[0], render.thumbnail_png(local, 1, 64), cut[1], cut[2]], 64)
    assert len(server.requests) == 3  # each remote member fetched once, through remote_cutouts


def test_remote_members_are_fetched_within_the_concurrency_bound(server, viewer, settings):
    settings.CUTOUT_CONCURRENCY = 2
    server.reset("slow")
    server.delay = 0.2
    remote = remote_survey(server.template, n=8)
    url = atlas.layout([(g, remote) for g in Galaxy.objects.filter(survey=remote).order_by("image_index")], 32).url
    settings.CUTOUT_SLOT_WAIT = 5.0
    resp = viewer.get(url)
    assert resp["Cache-Control"] == IMMUTABLE and server.count == 8
    assert server.max_in_flight <= 2


def test_atlas_cache_is_evicted_least_recently_used(viewer, settings):
    survey = make_survey(n=6, size=16)
    gs = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
    atlas._written.update(bytes=0, swept=False)
    settings.ATLAS_CACHE_BYTES = 1   # every write sweeps down to nothing but the newest ones
    for k in range(1, 4):
        assert viewer.get(atlas.layout([(g, survey) for g in gs[:k]], 32).url).status_code == 200
        atlas._written.update(swept=False)
    assert len(list(atlas.cache_root().rglob("*.jpg"))) <= 1


def test_collection_page_draws_its_cells_from_one_atlas_of_mixed_surveys(make_user, client):
    from webapp.embeddings.models import Collection
    user = make_user("viewer", "ann")
    client.force_login(user)
    one, two = make_survey(n=4, size=16), make_survey(name="Two", slug="two", n=3, size=16, seed=2)
    collection = Collection.objects.create(owner=user, name="Rings")
    collection.galaxies.set(Galaxy.objects.all())
    resp = client.get(f"/collections/{collection.pk}/")
    html = resp.content.decode()
    grid = html[html.index('class="grid galaxy-grid result-grid sprite-grid"'):]
    grid = grid[:grid.index("</form>")]
    urls = set(re.findall(r"/thumbs/atlas/[^'\"\s)]+", grid))
    assert len(urls) == 1 and "<img" not in grid and grid.count('class="sprite" role="img"') == 7
    expected = [render.thumbnail_png(s, i, 96) for s in (one, two) for i in range(s.n_galaxies)]
    assert_tiles(body(client.get(unescape(urls.pop()))), expected, 96)  # page order: survey, then image index


def test_the_atlas_api_lays_out_any_list_of_ids_in_one_query(viewer):
    """Drawers built in the browser (the map's selection) ask for one atlas of their ids: the same
    few queries for 3 ids as for 30, never one per galaxy."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    survey = make_survey(n=30, size=16)
    ids = list(Galaxy.objects.filter(survey=survey).order_by("-image_index").values_list("pk", flat=True))
    replies = {}
    for n in (3, 30):
        with CaptureQueriesContext(connection) as queries:
            resp = viewer.get(f"/api/thumbs/atlas?size=72&ids={','.join(map(str, ids[:n]))}")
        assert resp.status_code == 200, resp.content
        replies[n] = (resp.json(), len(queries.captured_queries))
    assert replies[3][1] == replies[30][1] <= 4
    data = replies[30][0]
    expected = atlas.layout(atlas.members_of(ids), 72)
    assert data["url"] == expected.url and data["positions"] == expected.positions
    assert (data["columns"], data["rows"], data["background_size"]) == (10, 3, "1000% 300%")
    assert replies[3][0]["positions"] == atlas.layout(atlas.members_of(ids[:3]), 72).positions
    image = viewer.get(data["url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("query, message", [
    ("size=72&ids=999999999", "unknown galaxy id"),
    ("size=72&ids=" + ",".join(str(i) for i in range(1, 202)), "at most 200"),
    ("size=72&ids=1,x", "comma-separated"),
    ("size=9999&ids=1", "size"),
])
def test_bad_atlas_api_requests_are_a_clear_400(viewer, query, message):
    resp = viewer.get("/api/thumbs/atlas?" + query)
    assert resp.status_code == 400 and message in resp.json()["error"], resp.content


def test_a_cold_atlas_renders_its_members_in_memory_without_writing_their_thumbnails(viewer):
    """Per member a PNG encode and decode was most of a cold atlas's cost (load test): members
    without a file are rendered in memory only, and equal the thumbnail rendered later."""
    survey = make_survey(n=12, size=16)
    galaxies = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
    render.thumbnail_png(survey, 3, 48)                          # one member already has its file
    sprites = atlas.layout([(g, survey) for g in galaxies], 48)
    data = body(viewer.get(sprites.url))
    on_disk = sorted(p.name for p in render.cache_dir(survey).glob("*_composite-48.png"))
    assert on_disk == ["3_composite-48.png"]
    assert_tiles(data, [render.thumbnail_png(survey, i, 48) for i in range(12)], 48)


def test_band_members_are_the_band_thumbnails_and_composite_atlases_keep_their_keys(viewer, monkeypatch):
    """The labeling page's strip atlas: id:bN members are band N's thumbnails; adding bands to
    the vocabulary moved no composite-only atlas (their digest text is unchanged)."""
    import hashlib
    survey = make_survey(n=4, size=16)
    g0, g1 = Galaxy.objects.filter(survey=survey).order_by("image_index")[:2]
    members = [(g0, survey), (g0, survey, "b0"), (g0, survey, "b2"), (g1, survey), (g1, survey, "b1")]
    sprites = atlas.layout(members, 32)
    assert f"ids={g0.pk},{g0.pk}:b0,{g0.pk}:b2,{g1.pk},{g1.pk}:b1" in sprites.url
    reads = []
    real_read = render.read_images
    monkeypatch.setattr(render, "read_images", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    resp = viewer.get(sprites.url)
    # cold: the three missing band files in one store read, the composites in one, the survey's stretch
    # statistics once (a read per band tile would make it 5)
    assert len(reads) <= 3, reads
    monkeypatch.setattr(render, "read_images", real_read)
    assert resp.status_code == 200 and resp["Cache-Control"] == IMMUTABLE
    expected = [render.thumbnail_png(survey, g0.image_index, 32), render.thumbnail_png(survey, g0.image_index, 32, "b0"),
                render.thumbnail_png(survey, g0.image_index, 32, "b2"), render.thumbnail_png(survey, g1.image_index, 32),
                render.thumbnail_png(survey, g1.image_index, 32, "b1")]
    img = pixels(body(resp)).astype(np.int16)
    assert img.shape == (32, 5 * 32, 3)
    for i, data in enumerate(expected):           # each cell is its own member, to JPEG's precision
        assert float(np.abs(img[:, i * 32:(i + 1) * 32] - pixels(data).astype(np.int16)).mean()) < 3.0, i
    gray = img[:, 32:64]                           # a band tile is one band: grey, unlike the composite
    assert float(np.abs(gray[..., 0] - gray[..., 2]).mean()) < 2.0 < float(
        np.abs(img[:, :32, 0] - img[:, :32, 2]).mean())
    plain = [(g0, survey), (g1, survey)]
    text = f"atlas|32|{g0.pk}:{atlas.member_key(g0, survey, 32)};{g1.pk}:{atlas.member_key(g1, survey, 32)}"
    assert atlas.atlas_digest(plain, 32) == hashlib.sha256(text.encode()).hexdigest()[:atlas.DIGEST_CHARS]
    assert atlas.atlas_digest(members, 32) != atlas.atlas_digest(members[:1] + members[2:], 32)


def test_a_remote_survey_has_no_band_members(viewer):
    from tests.catalog.test_remote_cutouts import remote_survey as make_remote
    galaxy = Galaxy.objects.filter(survey=make_remote("http://127.0.0.1:9/{ra}/{dec}/{size}")).first()
    resp = viewer.get(f"/thumbs/atlas/{'0' * 32}.jpg?size=32&ids={galaxy.pk}:b0")
    assert resp.status_code == 400 and "colour composites" in resp.content.decode()
