"""HDF5 arrays (Galaxy10 style): layouts, labels, extra columns, bad files."""
import h5py
import numpy as np
import pytest

from ml.imagestore import open_store
from tests.catalog.ingest_helpers import truncate
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import NoGoodRows, build_options, ingest
from webapp.catalog.services.ingest_pixels import IngestError

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def run(path, **params):
    fmt, options = build_options({"format": "hdf5", "survey": "G10", "size": 16, **params})
    return ingest(fmt, path, options)


def galaxy10(path, n=5, size=24, **extra):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["ans"] = np.arange(n) % 10
        f["ra"] = np.linspace(10, 20, n)
        f["dec"] = np.linspace(-5, 5, n)
        f["redshift"] = np.linspace(0.01, 0.1, n)
        for key, value in extra.items():
            f[key] = value
    return path, images


def test_galaxy10_layout_with_labels_positions_and_columns(tmp_path):
    path, images = galaxy10(tmp_path / "Galaxy10.h5")
    report = run(path, label_key="galaxy10", size=24)
    assert (report.ingested, report.errors) == (5, [])
    survey = Survey.objects.get()
    assert (survey.image_kind, survey.bands, survey.image_shape) == ("rgb", ["R", "G", "B"], [5, 3, 24, 24])
    g = Galaxy.objects.get(image_index=3)
    assert g.source_id == "Galaxy10-000003"
    assert (g.ra, g.dec) == (pytest.approx(17.5), pytest.approx(2.5))
    assert g.metadata == {"redshift": pytest.approx(0.0775), "galaxy10_class": 3}
    with open_store(survey.store_abspath) as reader:
        np.testing.assert_allclose(reader.read(3), images[3].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_channel_first_float_flux_with_custom_dataset_names(tmp_path):
    flux = np.random.default_rng(1).normal(size=(4, 2, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "f.hdf5", "w") as f:
        f["cutouts"] = flux
        f["cls"] = np.array([0, 1, 1, 0])
        f["objid"] = np.array([b"a", b"b", b"c", b"d"])
    report = run(tmp_path / "f.hdf5", images_dataset="cutouts", labels_dataset="cls", bands="g,z")
    assert report.ingested == 4
    survey = Survey.objects.get()
    assert (survey.image_kind, survey.bands) == ("flux", ["g", "z"])
    assert list(Galaxy.objects.values_list("source_id", "metadata")) == [
        ("a", {"label_class": 0}), ("b", {"label_class": 1}), ("c", {"label_class": 1}), ("d", {"label_class": 0})]
    with open_store(survey.store_abspath) as reader:
        np.testing.assert_array_equal(reader.read_many(range(4)), flux)


def test_non_finite_rows_are_skipped_and_reported(tmp_path):
    flux = np.ones((3, 1, 16, 16), np.float32)
    flux[1, 0, 5, 5] = np.nan
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["images"] = flux
    report = run(tmp_path / "n.h5")
    assert list(Galaxy.objects.values_list("source_id", flat=True)) == ["n-000000", "n-000002"]
    assert report.errors == ["n.h5[1]: 1 non-finite pixels (NaN/inf); use nan_policy 'zero' to keep such objects"]


@pytest.mark.parametrize("make, message", [
    (lambda f: f.create_dataset("images", data=np.zeros((4, 32), np.uint8)),
     r"'images' has shape \(4, 32\); expected \(N, H, W, C\) or \(N, C, H, W\)"),
    (lambda f: f.create_dataset("pixels", data=np.zeros((2, 8, 8, 3), np.uint8)),
     r"no dataset 'images' \(datasets: \['pixels'\]\)"),
    (lambda f: (f.create_dataset("images", data=np.zeros((4, 20, 20, 3), np.uint8)),
                f.create_dataset("ans", data=np.zeros(3, int))),
     r"dataset 'ans' has 3 entries but the images have 4"),
])
def test_wrong_structure_is_a_clear_error(tmp_path, make, message):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        make(f)
    with pytest.raises(IngestError, match=message):
        run(tmp_path / "bad.h5")
    assert Survey.objects.count() == 0


def test_band_names_must_match_the_band_axis(tmp_path):
    path, _ = galaxy10(tmp_path / "g.h5")
    with pytest.raises(IngestError, match="has 3 bands but 2 band names were given"):
        run(path, bands="g,r")


def test_truncated_or_corrupt_file(tmp_path):
    path, _ = galaxy10(tmp_path / "t.h5", n=40, size=32)
    truncate(path, keep=0.3)
    with pytest.raises(IngestError, match="t.h5: not a readable HDF5 file"):
        run(path)
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(IngestError, match="junk.h5: not a readable HDF5 file"):
        run(tmp_path / "junk.h5")


def test_all_rows_bad_raises_no_good_rows(tmp_path):
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["images"] = np.full((2, 1, 16, 16), np.inf, np.float32)
    with pytest.raises(NoGoodRows):
        run(tmp_path / "nan.h5")
    assert Survey.objects.count() == 0
