"""manage.py ingest: summary, problems listed, non-zero exit when anything was skipped."""
import pytest
from django.core.management import CommandError, call_command

from tests.catalog.ingest_helpers import jpeg_folder
from webapp.catalog.models import Galaxy, Survey

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_clean_run_prints_a_summary_and_a_progress_bar(tmp_path, capsys):
    root = jpeg_folder(tmp_path / "in", ["a", "b", "c"])
    call_command("ingest", "folder", str(root), "--survey", "Mine", "--size", "16")
    out, err = capsys.readouterr()
    assert "Mine: 3 of 3 objects ingested, 0 problems" in out
    assert "100.0%" in err and "█" in err
    assert Survey.objects.get().n_galaxies == 3


def test_skipped_objects_are_listed_and_the_exit_is_non_zero(tmp_path, capsys):
    root = jpeg_folder(tmp_path / "in", ["a", "b", "c"])
    (root / "images" / "b.jpeg").write_bytes(b"not an image")
    with pytest.raises(CommandError, match=r"Mine: 2 of 3 objects ingested, 1 problems.*1 problem\(s\) listed"):
        call_command("ingest", "folder", str(root), "--survey", "Mine", "--size", "16")
    assert "skipped images/b.jpeg: not a readable image" in capsys.readouterr().err
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == ["a", "c"]   # good rows are in


def test_nothing_good_fails_and_writes_nothing(tmp_path, capsys):
    root = jpeg_folder(tmp_path / "in", ["a"])
    (root / "images" / "a.jpeg").write_bytes(b"")
    with pytest.raises(CommandError, match="no object of .* could be ingested"):
        call_command("ingest", "folder", str(root), "--survey", "Mine")
    assert "skipped images/a.jpeg" in capsys.readouterr().err
    assert not Survey.objects.exists()


def test_bad_options_are_command_errors(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a"])
    with pytest.raises(CommandError, match="crop fraction 2.0 must be in"):
        call_command("ingest", "folder", str(root), "--survey", "Mine", "--crop-fraction", "2")
    with pytest.raises(CommandError, match="a survey name is required"):
        call_command("ingest", "folder", str(root))
    with pytest.raises(CommandError, match="no id column 'nope'"):
        call_command("ingest", "folder", str(root), "--survey", "Mine", "--id-column", "nope")


def test_invalid_survey_spec_is_a_command_error(tmp_path):
    root = jpeg_folder(tmp_path / "in", ["a"])
    with pytest.raises(CommandError, match="name of 1 to 100 characters"):
        call_command("ingest", "folder", str(root), "--survey", "x" * 101)
    assert not Survey.objects.exists()
