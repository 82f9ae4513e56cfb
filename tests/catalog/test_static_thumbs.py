"""Content-addressed thumbnails: immutable headers, keys that move with what determines the bytes,
X-Accel-Redirect mode, placeholders never immutable, and the thumbnail view's role rules."""
from __future__ import annotations

import pytest

from tests.catalog.factories import make_survey
from tests.catalog.test_remote_cutouts import body, cutout_server, remote_survey, server  # noqa: F401 (fixtures)
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import browse, render, static_thumbs
from webapp.env import ConfigError, env_url_prefix

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def viewer(role_clients):
    return role_clients["viewer"]


@pytest.fixture
def survey():
    return make_survey(n=6, size=16)


def test_immutable_url_serves_the_rendered_png_for_a_year(viewer, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=4)
    url = browse.thumb_url(galaxy, survey, size=64)
    assert url.startswith(f"/thumbs/{galaxy.pk}/composite-64-") and url.endswith(".png")
    resp = viewer.get(url)
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert resp["Cache-Control"] == IMMUTABLE
    assert body(resp) == render.thumbnail_png(survey, 4, 64)
    assert render.thumb_path(survey, 4, "composite-64").exists()  # written on first request
    band = viewer.get(browse.thumb_url(galaxy, survey, size=64, band="1"))
    assert band["Cache-Control"] == IMMUTABLE and body(band) == render.thumbnail_png(survey, 4, 64, "b1")


def test_key_changes_with_checksum_size_band_and_render_version(survey, monkeypatch):
    galaxy = Galaxy.objects.get(survey=survey, image_index=2)
    key = static_thumbs.content_key(survey, galaxy, 96)
    assert key == static_thumbs.content_key(survey, galaxy, 96)  # deterministic
    others = {static_thumbs.content_key(survey, galaxy, 72), static_thumbs.content_key(survey, galaxy, 96, "b0"),
              static_thumbs.content_key(survey, Galaxy.objects.get(survey=survey, image_index=3), 96)}
    monkeypatch.setattr(render, "RENDER_VERSION", render.RENDER_VERSION + 1)
    others.add(static_thumbs.content_key(survey, galaxy, 96))
    monkeypatch.undo()
    survey.image_checksum = "0" * 64  # a re-ingest
    others.add(static_thumbs.content_key(survey, galaxy, 96))
    assert len(others) == 5 and key not in others


def test_a_stale_key_is_404_and_a_malformed_one_400(viewer, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=1)
    url = browse.thumb_url(galaxy, survey, size=64)
    assert viewer.get(url).status_code == 200
    Survey.objects.filter(pk=survey.pk).update(image_checksum="f" * 64)  # re-ingested since the page was served
    assert viewer.get(url).status_code == 404
    for bad in ("composite-64-xyz", "composite-9999-0123456789abcdef", "b7-64-0123456789abcdef", "nonsense"):
        assert viewer.get(f"/thumbs/{galaxy.pk}/{bad}.png").status_code == 400, bad


def test_accel_redirect_hands_the_cached_file_to_nginx(viewer, survey, settings):
    settings.ACCEL_REDIRECT = "/protected/"
    galaxy = Galaxy.objects.get(survey=survey, image_index=3)
    resp = viewer.get(browse.thumb_url(galaxy, survey, size=48))
    assert resp.status_code == 200 and resp.content == b"" and resp["Cache-Control"] == IMMUTABLE
    path = render.thumb_path(survey, 3, "composite-48")
    rel = path.relative_to(settings.DATA_DIR / "cache").as_posix()
    assert resp["X-Accel-Redirect"] == f"/protected/{rel}" and path.exists()
    assert resp["Content-Type"] == "image/png"


def test_remote_keys_follow_template_layer_and_position(server):
    survey = remote_survey(server.template, n=2)
    first, second = Galaxy.objects.filter(survey=survey).order_by("image_index")
    key = static_thumbs.content_key(survey, first, 96)
    assert key.startswith("composite-96-") and key == static_thumbs.content_key(survey, first, 96, "b1")  # colour only
    assert static_thumbs.content_key(survey, second, 96) != key
    survey.cutout_layer = "ls-dr9"
    assert static_thumbs.content_key(survey, first, 96) != key
    survey.cutout_layer, survey.cutout_url_template = "ls-dr10", server.template + "&x=1"
    assert static_thumbs.content_key(survey, first, 96) != key


def test_remote_cutout_is_immutable_but_a_failure_placeholder_never(server, viewer, settings):
    survey = remote_survey(server.template, n=2)
    galaxy = Galaxy.objects.get(survey=survey, image_index=0)
    url = browse.thumb_url(galaxy, survey, size=96)
    server.reset("500")
    failed = viewer.get(url)
    assert failed.status_code == 200 and body(failed) == render.remote_cutouts.placeholder_png(96)
    assert failed["Cache-Control"] == "public, max-age=60" and "immutable" not in failed["Cache-Control"]
    settings.ACCEL_REDIRECT = "/protected/"   # a placeholder is never handed to nginx either
    render.remote_cutouts.reset_state()
    again = viewer.get(url)
    assert "X-Accel-Redirect" not in again and "immutable" not in again["Cache-Control"]
    server.reset("ok")
    render.remote_cutouts.reset_state()
    ok = viewer.get(url)
    assert ok["Cache-Control"] == IMMUTABLE and ok["X-Accel-Redirect"].startswith("/protected/remote_cutouts/")
    settings.ACCEL_REDIRECT = ""
    assert body(viewer.get(url)) == render.remote_cutouts.read_cached(render.remote_cutouts.cutout_url(survey, galaxy, 96))


def test_a_catalogue_only_survey_keeps_the_revalidated_url(viewer):
    survey = Survey.objects.create(name="Bare", slug="bare", status=Survey.Status.READY, n_galaxies=1)
    galaxy = Galaxy.objects.create(survey=survey, source_id="a", ra=1.0, dec=2.0, image_index=0)
    assert browse.thumb_url(galaxy, survey) == f"/thumbs/{galaxy.pk}.png?size=96&v=x"
    assert "immutable" not in viewer.get(browse.thumb_url(galaxy, survey))["Cache-Control"]


def test_deferred_fields_fall_back_instead_of_a_query_per_galaxy(survey, django_assert_num_queries):
    galaxy = Galaxy.objects.select_related("survey").only("id", "image_index", "survey__image_checksum").get(
        survey=survey, image_index=0)
    with django_assert_num_queries(0):
        assert browse.thumb_url(galaxy, galaxy.survey).startswith(f"/thumbs/{galaxy.pk}.png?")


def test_thumbnail_role_rules_hold_for_every_thumbnail_url(role_clients, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=0)
    immutable = browse.thumb_url(galaxy, survey, size=32)
    from webapp.catalog.services import atlas
    atlas_url = atlas.layout([(galaxy, survey)], 32).url
    for url in (f"/thumbs/{galaxy.pk}.png?size=32", immutable, atlas_url):
        anon = role_clients["anonymous"].get(url)
        assert anon.status_code == 302 and "/accounts/login/" in anon["Location"], url
        for role in ("viewer", "labeler", "curator", "admin"):
            assert role_clients[role].get(url).status_code == 200, (role, url)


@pytest.mark.parametrize("value, ok", [("/protected/", True), ("/a/b/", True), ("protected/", False),
                                       ("/protected", False), ("//cdn/", False), ("/a/../b/", False),
                                       ("/a?b/", False)])
def test_accel_redirect_setting_is_parsed_strictly(monkeypatch, value, ok):
    monkeypatch.setenv("LATENTSKY_ACCEL_REDIRECT", value)
    if ok:
        assert env_url_prefix("LATENTSKY_ACCEL_REDIRECT") == value
    else:
        with pytest.raises(ConfigError, match="LATENTSKY_ACCEL_REDIRECT"):
            env_url_prefix("LATENTSKY_ACCEL_REDIRECT")
    monkeypatch.delenv("LATENTSKY_ACCEL_REDIRECT")
    assert env_url_prefix("LATENTSKY_ACCEL_REDIRECT") == ""
