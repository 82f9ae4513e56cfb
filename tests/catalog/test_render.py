"""Cutout rendering: stretches, composites, PNG cache, reader cache, pre-render job."""
import io

import numpy as np
import pytest
from astropy.visualization import LuptonAsinhStretch, make_lupton_rgb
from PIL import Image

from ml import stretch
from webapp.catalog.services import render, store_cache
from tests.catalog.factories import galaxy_images, make_survey

pytestmark = pytest.mark.unit


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_lupton_parameters_put_noise_dark_and_bright_at_full_scale():
    q, linear = stretch.lupton_parameters(noise=0.01, bright=1.0)
    f = LuptonAsinhStretch(stretch=linear, Q=q)
    assert f(np.array([0.01]), clip=False)[0] == pytest.approx(stretch.NOISE_BRIGHTNESS, abs=1e-3)
    assert f(np.array([1.0]), clip=False)[0] == pytest.approx(1.0, abs=1e-6)


def test_composite_is_lupton_rgb_of_normalised_bands():
    images = galaxy_images(20, 3, size=16)
    params = stretch.estimate_stretch(images, "flux")
    assert params.mode == "lupton" and params.rgb_bands == (2, 1, 0)  # g,r,i -> b,g,r
    rgb = stretch.composite_rgb(images[3], params)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    norm = images[3] / np.array(params.band_scale, dtype=np.float32)[:, None, None]
    expected = make_lupton_rgb(norm[2], norm[1], norm[0], minimum=0.0, stretch=params.lupton_stretch, Q=params.lupton_q)
    np.testing.assert_array_equal(rgb, expected)
    assert rgb.max() > 200  # the galaxy core reaches near full brightness


def test_asinh_band_view_is_monotonic_in_flux():
    ramp = np.linspace(-1, 30, 16 * 16, dtype=np.float32).reshape(1, 16, 16)
    params = stretch.estimate_stretch(galaxy_images(10, 1, 16), "flux")
    assert params.mode == "asinh"
    grey = stretch.band_grey(ramp, 0, params).ravel()
    assert np.all(np.diff(grey.astype(int)) >= 0)
    assert grey[0] == 0 and grey[-1] == 255


def test_two_band_survey_gets_a_synthetic_green_channel():
    params = stretch.estimate_stretch(galaxy_images(10, 2, 16), "flux")
    assert params.rgb_bands == (1, -1, 0)
    assert stretch.composite_rgb(galaxy_images(1, 2, 16)[0], params).shape == (16, 16, 3)


@pytest.mark.django_db
def test_rgb_survey_passes_pixels_through_exactly():
    survey = make_survey(slug="jpeg", n=4, size=16, image_kind="rgb")
    images = galaxy_images(4, 3, 16, kind="rgb")
    png = render.thumbnail_png(survey, 2, size=16, band="composite")
    np.testing.assert_array_equal(decode(png), np.rint(images[2] * 255).astype(np.uint8).transpose(1, 2, 0))


@pytest.mark.django_db
def test_thumbnail_cache_hit_returns_same_bytes_and_writes_once(monkeypatch, settings):
    survey = make_survey(n=5, size=16)
    writes = []
    real_write = render.write_atomic
    monkeypatch.setattr(render, "write_atomic", lambda p, d, **kw: (writes.append(p), real_write(p, d, **kw)))
    render.survey_stretch(survey)  # stretch.json is written once too; count only thumbnails below
    writes.clear()
    first = render.thumbnail_png(survey, 3, size=96)
    second = render.thumbnail_png(survey, 3, size=96)
    assert first == second
    expected = settings.DATA_DIR / "cache" / "thumbs" / str(survey.pk) \
        / f"{survey.image_checksum[:8]}-r{render.RENDER_VERSION}" / "3_composite-96.png"
    assert writes == [expected]
    assert decode(first).shape == (96, 96, 3)


@pytest.mark.django_db
def test_band_thumbnail_is_greyscale_and_sized():
    survey = make_survey(n=3, size=16)
    assert decode(render.thumbnail_png(survey, 1, size=40, band="b2")).shape == (40, 40)


@pytest.mark.django_db
def test_parse_band_and_size_reject_bad_values():
    survey = make_survey(n=2, size=16)
    assert render.parse_band(survey, "r") == "b1"
    assert render.parse_band(survey, "0") == "b0"
    assert render.parse_band(survey, None) == "composite"
    for bad in ("3", "-1", "x"):
        with pytest.raises(render.RenderError):
            render.parse_band(survey, bad)
    assert render.parse_size(None) == render.DEFAULT_THUMB_SIZE
    for bad in ("0", "9999", "abc"):
        with pytest.raises(render.RenderError):
            render.parse_size(bad)


@pytest.mark.django_db
def test_reader_is_reused_and_reopened_when_store_changes(settings):
    survey = make_survey(n=3, size=16)
    a = store_cache.get_reader(survey.store_abspath)
    assert store_cache.get_reader(survey.store_abspath) is a
    from ml.imagestore import ImageStoreWriter
    with ImageStoreWriter(survey.store_abspath, bands=("g", "r", "i"), size=16) as w:
        w.append(np.zeros((5, 3, 16, 16), np.float32))
    b = store_cache.get_reader(survey.store_abspath)
    assert b is not a and b.shape[0] == 5
    store_cache.close_all()
    assert store_cache.open_reader_count() == 0


@pytest.mark.django_db
def test_prerender_renders_every_missing_thumbnail_once():
    survey = make_survey(n=7, size=16)
    calls = []
    result = render.prerender_survey(survey, size=32, batch=3, progress=lambda d, t, m="": calls.append((d, t)))
    assert (result["rendered"], result["skipped"]) == (7, 0)
    assert calls == [(3, 7), (6, 7), (7, 7)]
    assert len(list(render.cache_dir(survey).glob("*_composite-32.png"))) == 7
    assert render.prerender_survey(survey, size=32)["rendered"] == 0


@pytest.mark.django_db
def test_prerender_job_handler_reads_survey_id():
    from types import SimpleNamespace
    survey = make_survey(n=3, size=16)
    result = render.run_prerender_job(SimpleNamespace(params={"survey_id": survey.pk}), lambda *a: None)
    assert result["rendered"] == 3 and result["variant"] == "composite-96"
