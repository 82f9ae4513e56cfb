"""services/upload.py: uploaded FITS/PNG/JPEG -> survey-format pixels, and every refusal."""
import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.catalog.factories import make_survey
from webapp.embeddings.services.upload import (UploadError, prepare_upload, read_upload,
                                               survey_crop_fraction)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def fits_bytes(planes, names=("g", "r", "i"), header=None, cube=False) -> bytes:
    hdus = [fits.PrimaryHDU()]
    if cube:
        hdus = [fits.PrimaryHDU(np.asarray(planes, np.float32), header=header)]
    else:
        for name, plane in zip(names, planes):
            h = fits.ImageHDU(np.asarray(plane, np.float32), header=header.copy() if header else None)
            h.header["EXTNAME"] = name
            hdus.append(h)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def image_bytes(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def flux_survey():
    return make_survey(name="Flux", slug="flux", n=4, size=16)  # 3 bands g, r, i, 0.396"/px


@pytest.fixture
def rgb_survey():
    return make_survey(name="Colour", slug="colour", n=4, size=16, image_kind="rgb")


def test_fits_per_band_hdus_at_survey_size_pass_through_exactly(flux_survey):
    planes = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    # HDUs in a different order: matched by EXTNAME, not position.
    prepared = prepare_upload(fits_bytes(planes[[2, 0, 1]], names=("i", "g", "r")), flux_survey)
    assert prepared.file_format == "FITS"
    np.testing.assert_array_equal(prepared.pixels, planes)


def test_fits_cube_without_wcs_keeps_central_survey_pixels(flux_survey):
    cube = np.random.default_rng(1).normal(size=(3, 40, 40)).astype(np.float32)
    prepared = prepare_upload(fits_bytes(cube, cube=True), flux_survey)
    np.testing.assert_allclose(prepared.pixels, cube[:, 12:28, 12:28], atol=1e-5)
    assert "survey pixels are assumed" in " ".join(prepared.notes)


def test_fits_with_wcs_is_resampled_to_the_survey_pixel_scale_conserving_flux(flux_survey):
    yy, xx = np.mgrid[:64, :64] - 31.5
    blob = np.exp(-(xx ** 2 + yy ** 2) / (2 * 6.0 ** 2)).astype(np.float32)  # sigma 6 px at 0.198"
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                          "CRPIX1": 32.5, "CRPIX2": 32.5, "CDELT1": -0.198 / 3600, "CDELT2": 0.198 / 3600})
    prepared = prepare_upload(fits_bytes([blob, 2 * blob, 3 * blob], header=header), flux_survey)
    # survey field = 16 px * 0.396" = 6.3" = 32 file pixels: central 32 px -> 16 px, flux kept.
    assert prepared.pixels.shape == (3, 16, 16)
    np.testing.assert_allclose(prepared.pixels.sum(axis=(1, 2)), blob[16:48, 16:48].sum() * np.array([1, 2, 3]),
                               rtol=0.02)
    notes = " ".join(prepared.notes)
    assert "WCS pixel scale 0.198″ vs survey 0.396″" in notes and "RA 150.00000°" in notes


@pytest.mark.parametrize("planes,match", [
    (np.ones((1, 16, 16)), r"wrong number of bands: the FITS file has 1 image HDU\(s\) \(g\), survey Flux has 3 \(g, r, i\)"),
    (np.ones((2, 16, 16)), r"wrong number of bands: the FITS file has 2"),
])
def test_fits_with_wrong_band_count_is_refused(flux_survey, planes, match):
    with pytest.raises(UploadError, match=match):
        prepare_upload(fits_bytes(planes), flux_survey)
    with pytest.raises(UploadError, match=r"wrong number of bands: the FITS cube has"):
        prepare_upload(fits_bytes(np.ones((4, 16, 16)), cube=True), flux_survey)


def test_corrupt_and_truncated_files_are_refused(flux_survey, rgb_survey):
    with pytest.raises(UploadError, match="not a FITS, PNG or JPEG"):
        prepare_upload(b"hello, this is text", flux_survey)
    good_fits = fits_bytes(np.ones((3, 64, 64)))
    with pytest.raises(UploadError, match="corrupt FITS"):
        prepare_upload(good_fits[: len(good_fits) // 2], flux_survey)
    png = image_bytes(np.zeros((32, 32, 3), np.uint8) + 100, "PNG")
    with pytest.raises(UploadError, match="corrupt PNG"):
        prepare_upload(png[:60], rgb_survey)


def test_nan_pixels_zeroed_with_a_note_unless_most_are_bad(flux_survey):
    planes = np.ones((3, 16, 16), np.float32)
    planes[0, 0, :4] = np.nan
    prepared = prepare_upload(fits_bytes(planes), flux_survey)
    assert np.isfinite(prepared.pixels).all() and "4 NaN/inf pixels set to 0" in prepared.notes
    planes[:, :12] = np.inf
    with pytest.raises(UploadError, match="75% of the pixels are NaN or inf"):
        prepare_upload(fits_bytes(planes), flux_survey)


def test_png_jpeg_for_a_flux_survey_and_fits_for_an_rgb_survey_are_refused(flux_survey, rgb_survey):
    jpeg = image_bytes(np.zeros((32, 32, 3), np.uint8), "JPEG")
    with pytest.raises(UploadError, match=r"calibrated flux in 3 band\(s\) \(g, r, i\); upload a FITS"):
        prepare_upload(jpeg, flux_survey)
    with pytest.raises(UploadError, match="upload a PNG or JPEG, not FITS"):
        prepare_upload(fits_bytes(np.ones((3, 16, 16))), rgb_survey)


def test_colour_image_is_cropped_and_resized_like_the_survey(rgb_survey):
    arr = np.zeros((100, 100, 3), np.uint8)
    arr[30:70, 30:70] = (255, 128, 0)       # an orange square filling the central 40%
    prepared = prepare_upload(image_bytes(arr, "PNG"), rgb_survey, crop_fraction=0.4)
    assert prepared.pixels.shape == (3, 16, 16) and prepared.pixels.dtype == np.float32
    np.testing.assert_allclose(prepared.pixels[:, 8, 8], [1.0, 128 / 255, 0.0], atol=0.01)
    np.testing.assert_allclose(prepared.pixels.mean(axis=(1, 2)), [1.0, 128 / 255, 0.0], atol=0.02)
    whole = prepare_upload(image_bytes(arr, "JPEG"), rgb_survey, crop_fraction=1.0)
    assert whole.file_format == "JPEG" and whole.pixels[0, 0, 0] < 0.1  # black border kept


def test_greyscale_image_for_a_colour_survey_is_refused(rgb_survey):
    with pytest.raises(UploadError, match=r"the image has 1 band \(greyscale"):
        prepare_upload(image_bytes(np.zeros((32, 32), np.uint8), "PNG"), rgb_survey)


def test_size_limit_empty_and_gzip(settings, flux_survey):
    settings.MAX_UPLOAD_BYTES = 2048
    with pytest.raises(UploadError, match=r"the file is 3 kB; uploads are limited to 2 kB"):
        read_upload(SimpleUploadedFile("big.fits", b"x" * 3000))
    with pytest.raises(UploadError, match="empty"):
        read_upload(SimpleUploadedFile("empty.fits", b""))
    with pytest.raises(UploadError, match="no file was uploaded"):
        read_upload(None)
    bomb = gzip.compress(b"\0" * 100_000)  # 100 kB of zeros compress to ~100 bytes
    with pytest.raises(UploadError, match="decompresses to more than"):
        read_upload(SimpleUploadedFile("bomb.fits.gz", bomb))
    settings.MAX_UPLOAD_BYTES = 10_000_000
    raw = fits_bytes(np.ones((3, 16, 16)))
    assert read_upload(SimpleUploadedFile("x.fits.gz", gzip.compress(raw))) == raw


def test_crop_fraction_comes_from_the_survey_ingest_job(rgb_survey):
    from webapp.jobs.models import Job
    assert survey_crop_fraction(rgb_survey) == 1.0
    Job.objects.create(kind="ingest", status="succeeded", params={"preset": "gz1_sdss", "path": "/x"},
                       result={"survey_id": rgb_survey.pk})
    assert survey_crop_fraction(rgb_survey) == 0.4


def test_uploading_a_survey_cutout_finds_that_galaxy_with_the_real_encoder(role_clients):
    """FITS of galaxy 7's own pixels -> same preprocessing, same encoder -> galaxy 7 at distance ~0."""
    from tests.embeddings.encoder_factories import make_encoder
    from webapp.catalog.models import Galaxy
    from webapp.catalog.services.store_cache import read_images
    from webapp.embeddings.models import EmbeddingSet
    from webapp.embeddings.services import encoding, search
    from webapp.embeddings.services.vectors import write_embedding_set

    survey = make_survey(name="Real", slug="real", n=24, size=16)
    images = np.asarray(read_images(survey.store_abspath, list(range(24))))       # (24, 3, 16, 16)
    encoder = make_encoder(survey=survey, images=images)
    es = EmbeddingSet.objects.create(encoder=encoder, name="real set")
    es.surveys.add(survey)
    ids = list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))
    write_embedding_set(es, np.array(ids), encoding.embed_images(encoder, images))
    search.forget_cached_indexes()
    upload = SimpleUploadedFile("g7.fits", fits_bytes(images[7]), content_type="application/fits")
    r = role_clients["viewer"].post("/api/search/upload", {"image": upload, "set": es.pk, "k": 3})
    assert r.status_code == 200, r.content
    top = r.json()["results"][0]
    assert top["id"] == ids[7] and top["distance"] == pytest.approx(0.0, abs=1e-4)
