"""Folder of JPEG/PNG cutouts + CSV: good rows go in, every bad file is reported, re-runs are idempotent."""
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from ml.imagestore import open_store
from tests.catalog.ingest_helpers import jpeg_folder, png_bomb, truncate, write_csv, write_image
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import NoGoodRows, build_options, ingest
from webapp.catalog.services.ingest_pixels import IngestError, decode_rgb
from webapp.catalog.services.ingest_tables import TableError

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def run(path, **params):
    fmt, options = build_options({"format": "folder", "survey": "Cutouts", "size": 16, **params})
    return ingest(fmt, path, options)


def store_files():
    return sorted(p.name for p in (Path(settings.DATA_DIR) / "surveys").glob("*"))


def test_jpeg_folder_with_catalogue_is_ingested_as_rgb(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["101", "102", "103"])
    report = run(root)
    assert (report.found, report.ingested, report.errors) == (3, 3, [])
    survey = Survey.objects.get(name="Cutouts")
    assert (survey.image_kind, survey.bands, survey.image_shape) == ("rgb", ["R", "G", "B"], [3, 3, 16, 16])
    g = Galaxy.objects.get(survey=survey, source_id="102")
    assert (g.image_index, g.ra, g.dec, g.metadata) == (1, 150.01, 1.99, {"mag_r": 18.1})
    with open_store(survey.store_abspath) as reader:
        pixel = reader.read(0)[:, 8, 8]                  # (R, G, B) at the centre, JPEG-rounded
    np.testing.assert_allclose(pixel, np.array([200, 30, 30]) / 255, atol=0.03)


def test_centre_crop_keeps_only_the_central_fraction(tmp_path):
    path = write_image(tmp_path / "x.png", size=40, colour=(0, 0, 255), centre=(255, 0, 0))
    whole = decode_rgb(path, size=8, crop_fraction=1.0)
    centre = decode_rgb(path, size=8, crop_fraction=0.5)
    np.testing.assert_allclose(centre[:, 4, 4], [1, 0, 0])
    # The crop shows the red centre (the Lanczos kernel only grazes the blue just outside the box).
    assert centre[0, 0, 0] > 0.85 and centre[2, 0, 0] < 0.15
    np.testing.assert_allclose(whole[:, 0, 0], [0, 0, 1], atol=0.02)    # the full frame still has blue corners
    assert centre.shape == (3, 8, 8) and centre.dtype == np.float32


def test_id_column_autodetect_and_explicit_names(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["7", "8"], header=("OBJID", "RA", "DEC"))
    assert run(root).ingested == 2
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == ["7", "8"]
    with pytest.raises(TableError, match=r"catalog\.csv: no id column 'objnum' \(columns: OBJID, RA, DEC\)"):
        run(root, survey="Other", id_column="objnum")


def test_missing_id_column_names_the_file_and_the_candidates(tmp_path):
    root = tmp_path / "in"
    write_image(root / "a.jpg")
    write_csv(root / "table.csv", ["name_of_thing", "mag"], [["a", 1]])
    with pytest.raises(TableError, match=r"table\.csv: no id column found; looked for source_id, objid"):
        run(root, id_column="")


def test_bad_files_are_reported_and_good_rows_ingested(tmp_path):
    ids = [f"{i}" for i in range(1, 9)]
    root = jpeg_folder(tmp_path / "in", ids)
    images = root / "images"
    (images / "2.jpeg").write_bytes(b"this is not a jpeg at all")              # corrupt
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(images / "3.jpeg")
    truncate(images / "3.jpeg", keep=0.6)                                      # truncated mid-scan
    (images / "4.jpeg").unlink()                                               # missing
    png_bomb(images / "5.jpeg")                                                # decompression bomb (PNG bytes)
    lines = (root / "catalog.csv").read_text().splitlines()
    lines[6] = "6,abc,1.0,18.5"                                                # mistyped RA (line 7)
    lines.append("1,150.5,2.5,19.0")                                           # duplicate id (line 10)
    (root / "catalog.csv").write_text("\n".join(lines) + "\n")
    report = run(root, image_pattern="images/{id}.jpeg")
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == ["1", "7", "8"]
    assert report.ingested == 3 and report.skipped == 6
    errors = "\n".join(report.errors)
    assert "catalog.csv line 7: column 'ra' has 'abc', not a number" in errors
    assert "catalog.csv line 10: duplicate id 1 (kept catalog.csv line 2)" in errors
    assert "images/2.jpeg: not a readable image" in errors
    assert "images/3.jpeg: corrupt or truncated image" in errors
    assert "catalog.csv line 5: no image file for id 4 (images/{id}.jpeg)" in errors
    assert "images/5.jpeg: refusing to decode" in errors


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", 8_000, 8_000)
    with pytest.raises(IngestError, match="refusing to decode: declared size 8000x8000 px exceeds the limit of 50,000,000"):
        decode_rgb(bomb, size=16)
    huge = png_bomb(tmp_path / "huge.png", 100_000, 100_000)     # PIL's own guard fires first
    with pytest.raises(IngestError, match="refusing to decode: Image size"):
        decode_rgb(huge, size=16)
    small = write_image(tmp_path / "ok.png", size=40)
    with pytest.raises(IngestError, match="exceeds the limit of 100 pixels"):
        decode_rgb(small, size=16, max_pixels=100)


def test_rerun_is_idempotent(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a", "b", "c"])
    first = run(root)
    pks = list(Galaxy.objects.order_by("image_index").values_list("pk", "source_id"))
    second = run(root)
    assert second.checksum == first.checksum and second.shape == first.shape
    assert list(Galaxy.objects.order_by("image_index").values_list("pk", "source_id")) == pks
    assert second.changes["unchanged"] == 3 and Survey.objects.count() == 1
    assert len(store_files()) == 1


def test_limit_counts_catalogue_rows_in_order(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a", "b", "c", "d"])
    report = run(root, limit=2)
    assert (report.found, report.ingested) == (2, 2)
    assert list(Galaxy.objects.order_by("image_index").values_list("source_id", flat=True)) == ["a", "b"]


def test_zero_good_rows_raises_and_leaves_nothing(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a", "b"])
    for p in (root / "images").iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(NoGoodRows, match="no object .* could be ingested") as info:
        run(root)
    assert len(info.value.report.errors) == 2
    assert Survey.objects.count() == 0 and store_files() == []


def test_folder_without_catalogue_uses_file_stems_and_any_image_format(tmp_path):
    root = tmp_path / "in"
    write_image(root / "sub" / "x1.png")
    write_image(root / "x2.jpg")
    Image.open(write_image(root / "x3.png")).convert("LA").save(root / "x3.png")  # grey + alpha -> RGB
    report = run(root)
    assert report.ingested == 3 and report.errors == []
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == ["x1", "x2", "x3"]


def test_label_column_mistyped_value_is_reported(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a", "b", "c"], header=("objid",))
    write_csv(root / "catalog.csv", ["objid", "CLASS"], [["a", 0], ["b", "spiral"], ["c", 9]])
    report = run(root, label_column="CLASS", label_key="gz1")
    assert [g.metadata for g in Galaxy.objects.all()] == [{"gz1_class": 0, "gz1_label": "elliptical"}]
    assert report.errors == ["catalog.csv line 3: column 'CLASS' has 'spiral', not an integer class",
                             "catalog.csv line 4: column 'CLASS' has class 9, not one of [0, 1, 2, 3, 4, 5]"]


def test_ids_cannot_escape_the_input_folder(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a"])
    write_image(tmp_path / "secret.jpeg")
    write_csv(root / "catalog.csv", ["objid"], [["a"], ["../../secret"]])
    report = run(root, image_pattern="images/{id}.jpeg")
    assert report.ingested == 1
    assert report.errors == ["catalog.csv line 3: no image file for id ../../secret (images/{id}.jpeg)"]


def test_wrong_number_of_fields_and_several_tables(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a", "b"])
    (root / "catalog.csv").write_text("objid,ra,dec\na,1,2\nb,1\n")
    report = run(root)
    assert report.errors == ["catalog.csv line 3: 2 fields but the header has 3"] and report.ingested == 1
    write_csv(root / "other.csv", ["objid"], [["a"]])
    with pytest.raises(TableError, match="several catalogue tables"):
        run(root)


def test_options_are_validated():
    with pytest.raises(IngestError, match="crop fraction"):
        build_options({"format": "folder", "survey": "x", "crop_fraction": 1.5})
    with pytest.raises(IngestError, match="unknown format"):
        build_options({"format": "tiff", "survey": "x"})
    with pytest.raises(IngestError, match="is for format 'folder'"):
        build_options({"format": "fits", "preset": "gz1_sdss"})
    fmt, options = build_options({"format": "folder", "preset": "gz1_sdss", "size": 32})
    assert (fmt, options.size, options.crop_fraction, options.survey) == ("folder", 32, 0.4, "SDSS GZ1")
