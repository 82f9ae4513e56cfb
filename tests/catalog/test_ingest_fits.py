"""FITS cutouts: multi-extension or one file per band, CSV/FITS tables, WCS positions, bad files."""
import numpy as np
import pytest

from ml.imagestore import open_store
from tests.catalog.ingest_helpers import blob, truncate, write_band_file, write_csv, write_mef
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import build_options, ingest
from webapp.catalog.services.ingest_pixels import resize_bands

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def run(path, **params):
    fmt, options = build_options({"format": "fits", "survey": "Stamps", "size": 32, **params})
    return ingest(fmt, path, options)


def test_multi_extension_files_with_wcs_positions_and_header_facts(tmp_path):
    planes = np.stack([blob(32, 50.0 * (b + 1), seed=b) for b in range(3)])
    write_mef(tmp_path / "J1.fits", ra=150.1, dec=2.2, planes=planes, extra_header={"MAGZERO": 22.5})
    write_mef(tmp_path / "J2.fits", ra=359.99, dec=-30.0)
    report = run(tmp_path)
    assert (report.ingested, report.errors) == (2, [])
    survey = Survey.objects.get()
    assert (survey.bands, survey.image_kind, survey.image_shape) == (["g", "r", "i"], "flux", [2, 3, 32, 32])
    assert survey.pixel_scale_arcsec == pytest.approx(0.263)
    assert survey.zero_points == {"g": 22.5, "r": 22.5, "i": 22.5}
    g1 = Galaxy.objects.get(source_id="J1")
    assert (g1.ra, g1.dec) == (pytest.approx(150.1), pytest.approx(2.2))
    assert Galaxy.objects.get(source_id="J2").ra == pytest.approx(359.99)
    with open_store(survey.store_abspath) as reader:
        np.testing.assert_array_equal(reader.read(0), planes)       # same size: stored bit-exact


def test_one_file_per_band_is_detected_and_ordered_blue_to_red(tmp_path):
    for sid, ra in (("A1", 10.0), ("A2", 11.0)):
        for b, band in enumerate("gri"):
            write_band_file(tmp_path / f"{sid}_{band}.fits", blob(32, 10.0 * (b + 1)), ra=ra, dec=5.0)
    report = run(tmp_path)
    assert report.ingested == 2 and report.errors == []
    survey = Survey.objects.get()
    assert survey.bands == ["g", "r", "i"]                           # not alphabetical g, i, r
    with open_store(survey.store_abspath) as reader:
        fluxes = reader.read(0).sum(axis=(1, 2))
    np.testing.assert_allclose(fluxes, [10.0, 20.0, 30.0], atol=0.2)
    assert Galaxy.objects.get(source_id="A2").ra == pytest.approx(11.0)


def test_csv_catalogue_supplies_ids_positions_and_metadata(tmp_path):
    write_mef(tmp_path / "cut" / "x1.fits", ra=1.0, dec=1.0)
    write_mef(tmp_path / "cut" / "x2.fits", ra=1.0, dec=1.0)
    write_csv(tmp_path / "cat.csv", ["id", "ra", "dec", "z"], [["x1", 20.5, -1.5, 0.05], ["x2", 21.0, -1.0, 0.07]])
    report = run(tmp_path)
    assert report.ingested == 2
    g = Galaxy.objects.get(source_id="x2")
    assert (g.ra, g.dec, g.metadata) == (21.0, -1.0, {"z": 0.07})    # table wins over the WCS


def test_fits_table_catalogue(tmp_path):
    from astropy.table import Table

    write_mef(tmp_path / "s1.fits")
    write_mef(tmp_path / "s2.fits")
    Table({"objid": ["s1", "s2"], "mag": [18.5, np.nan]}).write(tmp_path / "table.fits")
    report = run(tmp_path, catalog="table.fits")
    assert report.ingested == 2 and report.errors == []
    assert dict(Galaxy.objects.values_list("source_id", "metadata")) == {"s1": {"mag": 18.5}, "s2": {"mag": None}}
    assert Galaxy.objects.get(source_id="s1").ra is None           # no table RA, no WCS


def test_bad_fits_files_are_reported(tmp_path):
    write_mef(tmp_path / "good.fits")
    truncate(write_mef(tmp_path / "short.fits", size=64), keep=0.5)
    (tmp_path / "junk.fits").write_bytes(b"SIMPLE  = nonsense" * 10)
    write_mef(tmp_path / "twoband.fits", bands=("g", "r"))
    nan_planes = np.stack([blob(32)] * 3)
    nan_planes[1, 3, 3] = np.nan
    write_mef(tmp_path / "nan.fits", planes=nan_planes)
    write_mef(tmp_path / "small.fits", size=16)                      # resized, still fine
    report = run(tmp_path)
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == ["good", "small"]
    errors = dict(e.split(": ", 1) for e in report.errors)
    assert set(errors) == {"short.fits", "junk.fits", "twoband.fits", "nan.fits"}
    assert errors["short.fits"].startswith("corrupt or truncated FITS")
    assert errors["junk.fits"].startswith("corrupt or truncated FITS")
    assert errors["twoband.fits"] == "2 image HDUs (g, r), expected bands g, r, i"
    assert errors["nan.fits"].startswith("1 non-finite pixels (NaN/inf)")


def test_nan_policy_zero_keeps_the_object(tmp_path):
    planes = np.stack([blob(32)] * 3)
    planes[0, :2] = np.inf
    write_mef(tmp_path / "n.fits", planes=planes)
    report = run(tmp_path, nan_policy="zero")
    assert report.ingested == 1
    with open_store(Survey.objects.get().store_abspath) as reader:
        image = reader.read(0)
    assert np.isfinite(image).all() and (image[0, :2] == 0).all()


def test_declared_size_is_checked_before_reading(tmp_path):
    write_mef(tmp_path / "a.fits", size=32)
    write_mef(tmp_path / "b.fits", size=8)
    report = run(tmp_path, max_pixels=500, size=8)
    assert [g.source_id for g in Galaxy.objects.all()] == ["b"]
    assert report.errors == ["a.fits: declared shape (32, 32) (1,024 pixels) exceeds the limit of 500; refusing to read"]


def test_missing_band_file_is_reported(tmp_path):
    for sid in ("B1", "B2"):
        for band in "gr":
            write_band_file(tmp_path / f"{sid}_{band}.fits", blob(32))
    (tmp_path / "B2_r.fits").unlink()
    report = run(tmp_path, bands="g,r")
    assert report.ingested == 1
    assert report.errors == ["B2_g.fits: no FITS file for id B2 band r"]


def test_resize_conserves_flux_and_crop_keeps_the_centre():
    image = np.stack([blob(40, 100.0)])
    half = resize_bands(image, 20)
    assert half.sum() == pytest.approx(100.0, rel=0.01)
    centre = resize_bands(image, 20, crop_fraction=0.5)              # 20x20 centre, no resampling scale
    assert centre.sum() == pytest.approx(image[0, 10:30, 10:30].sum(), rel=0.01)
    assert resize_bands(image, 40) is not None and np.array_equal(resize_bands(image, 40), image)
