"""Importing expert labels: CSV, FITS or VOTable; by id or RA/Dec; per-row report; idempotent."""
import io

import pytest
from astropy.table import Table
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from tests.catalog.factories import make_survey
from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services import label_import
from webapp.labeling.services.consensus import build_consensus
from webapp.labeling.services.labels import record_label, task_answers

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

CSV = b"id,class\nOBJ00000,spiral\nOBJ00001,0\nNOPE,spiral\nOBJ00002,blob\nOBJ00000,merger\n,spiral\nOBJ00003,7\n"


def galaxy(source_id):
    return Galaxy.objects.get(source_id=source_id)


def run(task, data: bytes, name="labels.csv", source="GZ2 expert", **kw):
    return label_import.import_labels(task, label_import.read_table(data, name), source, **kw)


def test_csv_by_id_stores_matched_rows_and_reports_the_others():
    task = make_task(n=10)
    report = run(task, CSV)
    assert (report.rows, report.imported, report.already) == (7, 2, 0)
    assert report.problems == [
        (3, "no galaxy of this task matches by id"),
        (4, "class 'blob' is not one of elliptical, spiral, edge-on, merger"),
        (5, f"galaxy {galaxy('OBJ00000').pk} was already matched by row 1"),
        (6, "no id"),
        (7, "class index 7 is out of range 0–3"),
    ]
    labels = {lab.galaxy.source_id: lab for lab in Label.objects.select_related("galaxy", "user")}
    assert {k: v.class_index for k, v in labels.items()} == {"OBJ00000": 1, "OBJ00001": 0}
    assert {(v.source, v.user.username, v.user.is_active) for v in labels.values()} == {
        ("GZ2 expert", "source:gz2-expert", False)}
    assert not labels["OBJ00000"].user.has_usable_password()


def test_re_running_adds_nothing_and_another_source_is_another_voter(make_user):
    task = make_task(n=10)
    run(task, CSV)
    again = run(task, CSV)
    assert (again.imported, again.already, Label.objects.count()) == (0, 2, 2)
    other = run(task, CSV, source="Nair & Abraham")
    assert (other.imported, Label.objects.count()) == (2, 4)
    cons = build_consensus(task)
    assert cons.n_votes[cons.row(galaxy("OBJ00000").pk)] == 2


def test_imported_labels_never_replace_a_persons_own_answer(make_user):
    task = make_task(n=10)
    curator = make_user("curator", "cur")
    record_label(task, galaxy("OBJ00000").pk, curator, class_index=3)
    run(task, CSV)
    answers = task_answers(task, [galaxy("OBJ00000").pk])
    assert sorted(a.class_index for a in answers.values()) == [1, 3]


def test_ra_dec_matching_within_the_radius_and_ambiguity():
    task = make_task(n=10)
    g1, g2 = galaxy("OBJ00001"), galaxy("OBJ00002")
    rows = f"ra,dec,class\n{g1.ra + 0.5 / 3600},{g1.dec},spiral\n{g2.ra + 5 / 3600},{g2.dec},spiral\n10,10,spiral\nx,1,spiral\n"
    report = run(task, rows.encode())
    assert report.imported == 1 and Label.objects.get().galaxy_id == g1.pk
    assert report.problems == [(2, "no galaxy of this task matches by RA/Dec within 1 arcsec"),
                               (3, "no galaxy of this task matches by RA/Dec within 1 arcsec"),
                               (4, "no valid ra/dec")]
    wide = run(task, f"ra,dec,class\n{g2.ra},{g2.dec},spiral\n".encode(), source="wide", radius_arcsec=55)
    assert wide.problems == [(1, "ambiguous: 3 galaxies match by RA/Dec within 55 arcsec")]


def test_an_id_in_two_of_the_tasks_surveys_is_ambiguous():
    surveys = [make_survey(name="A", slug="lab-a", n=4, size=16), make_survey(name="B", slug="lab-b", n=4, size=16)]
    task = make_task(surveys=surveys)
    report = run(task, b"id,class\nOBJ00001,spiral\n")
    assert report.problems == [(1, "ambiguous: 2 galaxies match by id")]


@pytest.mark.parametrize("fmt,name", [("fits", "labels.fits"), ("votable", "labels.vot")])
def test_fits_and_votable_tables(fmt, name):
    task = make_task(n=10)
    buffer = io.BytesIO()
    Table({"ID": ["OBJ00004", "OBJ00005"], "CLASS": [2, 3]}).write(buffer, format=fmt)
    report = run(task, buffer.getvalue(), name=name)
    assert (report.imported, report.problems) == (2, [])
    assert sorted(Label.objects.values_list("class_index", flat=True)) == [2, 3]


def test_regression_values():
    task = make_task(n=6, name="Redshift", kind=Task.Kind.REGRESSION, classes=[], target_name="z",
                     value_min=0.0, value_max=3.0)
    report = run(task, b"source_id,z\nOBJ00000,0.25\nOBJ00001,nan\nOBJ00002,9\n")
    assert report.imported == 1 and Label.objects.get().value == 0.25
    assert [r for r, _ in report.problems] == [2, 3]


@pytest.mark.parametrize("data,name,source,message", [
    (b"id,class\n", "x.txt", "s", "unknown table format"),
    (b"\x00\x01garbage", "x.fits", "s", "cannot read"),
    (b"foo,class\n1,spiral\n", "x.csv", "s", "id column"),
    (b"id,colour\nOBJ00000,red\n", "x.csv", "s", "class"),
    (b"id,class\nOBJ00000,spiral\n", "x.csv", "  ", "name the source"),
])
def test_files_that_cannot_be_imported_change_nothing(data, name, source, message):
    task = make_task(n=4)
    with pytest.raises(label_import.ImportProblem, match=message):
        run(task, data, name=name, source=source)
    assert Label.objects.count() == 0


def test_imported_labels_close_queue_items_like_any_answer():
    task = make_task(n=10)
    item = QueueItem.objects.create(task=task, galaxy=galaxy("OBJ00000"), rank=0)
    run(task, CSV)
    item.refresh_from_db()
    assert item.done


def test_curator_page_imports_and_reports(role_clients):
    task = make_task(n=10)
    url = f"/tasks/{task.pk}/import-labels"
    assert role_clients["labeler"].get(url).status_code == 403
    client = role_clients["curator"]
    assert client.get(url).status_code == 200
    response = client.post(url, {"source": "GZ2 expert", "file": SimpleUploadedFile("l.csv", CSV)})
    page = response.content.decode()
    assert response.status_code == 200 and 'id="import-report"' in page
    assert "no galaxy of this task matches by id" in page and Label.objects.count() == 2
    bad = client.post(url, {"source": "x", "file": SimpleUploadedFile("l.doc", b"hello")})
    assert bad.status_code == 400 and "unknown table format" in bad.content.decode()
    assert client.post(url, {"source": "x"}).status_code == 400


def test_upload_over_the_size_cap_is_refused(role_clients, settings):
    task = make_task(n=4)
    settings.MAX_UPLOAD_BYTES = 10
    response = role_clients["curator"].post(f"/tasks/{task.pk}/import-labels",
                                            {"source": "x", "file": SimpleUploadedFile("l.csv", CSV)})
    assert response.status_code == 400 and "limit" in response.content.decode()
    assert Label.objects.count() == 0


def test_management_command(tmp_path, capsys):
    task = make_task(n=10)
    path = tmp_path / "labels.csv"
    path.write_bytes(b"id,class\nOBJ00000,spiral\nOBJ00001,elliptical\n")
    call_command("import_labels", str(task.pk), str(path), "--source", "GZ2 expert")
    assert "2 labels imported" in capsys.readouterr().out
    call_command("import_labels", task.name, str(path), "--source", "GZ2 expert")
    assert "0 labels imported" in capsys.readouterr().out and Label.objects.count() == 2
    path.write_bytes(CSV)
    with pytest.raises(CommandError, match="rows skipped"):
        call_command("import_labels", str(task.pk), str(path), "--source", "GZ2 expert")
    assert "row 3: no galaxy" in capsys.readouterr().err
