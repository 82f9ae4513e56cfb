"""Galaxy Zoo formats on the real upstream fixtures (../shared/data/gz_catalog_formats) and the
GZ1 SDSS sample (../shared/data/gz1_sdss); every test skips cleanly when the data is absent."""
import csv
from collections import Counter

import pytest
from django.core.management import call_command

from ml import vocab
from tests.conftest import GZ1_DIR, SHARED_DATA, needs_gz1, needs_shared_data
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import build_options, ingest
from webapp.catalog.services.ingest_galaxyzoo import fraction_votes, kaggle_votes

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
FORMATS_DIR = SHARED_DATA / "gz_catalog_formats"
needs_formats = needs_shared_data(FORMATS_DIR.is_dir(),
                                  "gz_catalog_formats data (../shared/data/gz_catalog_formats) is not present")


def run(fmt, path, **params):
    fmt, options = build_options({"format": fmt, "survey": f"GZ {fmt}", "size": 16, **params})
    return ingest(fmt, path, options)


def test_fraction_votes_moves_fractions_and_drops_per_answer_columns():
    row = {"iauname": "J1", "redshift": 0.1, "bar_total-votes": 10, "bar_yes": 3, "bar_yes_fraction": 0.3,
           "bar_yes_debiased": 0.35, "bar_no": 7, "bar_no_fraction": 0.7, "bar_no_debiased": 0.65,
           "t01_smooth_a01_smooth_fraction": 0.2, "t01_smooth_a01_smooth_weighted_fraction": 0.25,
           "t01_smooth_a01_smooth_count": 4}
    assert fraction_votes(row) == {"iauname": "J1", "redshift": 0.1,
                                   "votes": {"bar_yes": 0.3, "bar_no": 0.7, "t01_smooth_a01_smooth": 0.2}}
    assert kaggle_votes({"Class1.1": 0.4, "Class11.6": 0.1, "x": 1}) == {"x": 1, "votes": {"Class1.1": 0.4, "Class11.6": 0.1}}


@needs_formats
def test_gz_decals_tables_and_pngs():
    report = run("gz_decals", FORMATS_DIR / "gz_decals")
    assert (report.ingested, report.errors) == (18, [])
    tables = Counter(m["gz_table"] for m in Galaxy.objects.values_list("metadata", flat=True))
    assert tables == {"gz_decals_auto_posteriors.csv": 6, "gz_decals_volunteers_1_and_2.csv": 6,
                      "gz_decals_volunteers_5.csv": 6}
    g = Galaxy.objects.get(source_id="J081412.47+220853.0")
    assert g.ra == pytest.approx(123.55200290421928)
    votes = g.metadata["votes"]
    assert votes["smooth-or-featured_smooth"] + votes["smooth-or-featured_featured-or-disk"] \
        + votes["smooth-or-featured_artifact"] == pytest.approx(1.0, abs=0.01)
    assert not any(k.endswith(("_debiased", "_fraction")) for k in g.metadata)


@needs_formats
def test_gz2_hart16_joined_through_the_filename_mapping():
    report = run("gz2", FORMATS_DIR / "gz2_sdss")
    assert (report.ingested, report.errors) == (3, [])
    g = Galaxy.objects.get(source_id="587737825678131439")
    assert (g.metadata["gz2_class"], g.ra) == ("Sc+t", pytest.approx(126.57260131835938))
    assert len(g.metadata["votes"]) == 37
    assert g.metadata["votes"]["t01_smooth_or_features_a02_features_or_disk"] == pytest.approx(0.973, abs=1e-3)
    assert Survey.objects.get().viewer_url(g).startswith("https://skyserver.sdss.org/")


@needs_formats
def test_kaggle_solutions_matched_to_present_images():
    report = run("gz_kaggle", FORMATS_DIR / "gz_kaggle_challenge_sdss")
    assert (report.ingested, report.errors) == (3, [])
    assert report.notes == ["3 images under gz_kaggle_challenge_sdss/ have no catalogue row and were not ingested"]
    g = Galaxy.objects.get(source_id="100008")
    assert len(g.metadata["votes"]) == 37 and g.metadata["votes"]["Class1.1"] == pytest.approx(0.383147)


@needs_gz1
def test_gz1_preset_subset_via_the_command(capsys):
    call_command("ingest", "folder", str(GZ1_DIR), "--preset", "gz1_sdss", "--limit", "300")
    survey = Survey.objects.get(name="SDSS GZ1")
    assert (survey.n_galaxies, survey.image_shape, survey.image_kind) == (300, [300, 3, 64, 64], "rgb")
    with open(GZ1_DIR / "smallCSV_class.csv") as fh:
        expected = [(r["OBJID"], int(r["CLASS"])) for r in csv.DictReader(fh)][:300]
    got = [(g.source_id, g.metadata["gz1_class"], g.metadata["gz1_label"]) for g in Galaxy.objects.all()]
    assert got == [(sid, cls, vocab.GZ1_CLASSES[cls]) for sid, cls in expected]
    assert "SDSS GZ1: 300 of 300 objects ingested, 0 problems" in capsys.readouterr().out
