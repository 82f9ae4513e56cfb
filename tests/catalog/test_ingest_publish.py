"""services.surveys: atomic publish, idempotent re-publish, in-place update, failure leaves nothing."""
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from ml.imagestore import array_checksum, open_store
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.surveys import GalaxyRow, PublishError, SurveyPublisher, delete_survey, publish_survey

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

SPEC = {"name": "Tiny", "bands": ["g", "r"], "image_kind": "flux", "pixel_scale_arcsec": 0.262,
        "description": "two-band test survey", "provenance": "test"}


def images(n, seed=0, size=8):
    return np.random.default_rng(seed).normal(size=(n, 2, size, size)).astype(np.float32)


def rows(ids, meta=lambda i: {"mag_r": 18.0 + i}):
    return [GalaxyRow(sid, ra=10.0 + i, dec=-5.0 + i, metadata=meta(i), truth={"t": i}) for i, sid in enumerate(ids)]


def batches(arr, size=3):
    return [arr[i:i + size] for i in range(0, len(arr), size)]


def store_files():
    return sorted(p.name for p in (Path(settings.DATA_DIR) / "surveys").glob("*"))


def snapshot(survey):
    survey.refresh_from_db()
    gal = list(Galaxy.objects.filter(survey=survey).values_list(
        "pk", "source_id", "image_index", "ra", "dec", "metadata", "truth").order_by("image_index"))
    return (survey.store_path, survey.image_checksum, survey.image_shape, survey.n_galaxies, gal)


def test_publish_writes_store_and_rows_in_row_order():
    arr = images(7)
    survey = publish_survey(SPEC, rows([f"S{i}" for i in range(7)]), batches(arr))
    assert (survey.status, survey.slug, survey.n_galaxies, survey.image_shape) == ("ready", "tiny", 7, [7, 2, 8, 8])
    assert survey.image_checksum == array_checksum(arr)
    assert survey.store_path.startswith("surveys/tiny-") and survey.store_path.endswith(".h5")
    with open_store(survey.store_abspath) as reader:
        np.testing.assert_array_equal(reader.read(4), arr[4])
    g = Galaxy.objects.get(survey=survey, source_id="S4")
    assert (g.image_index, g.ra, g.dec, g.metadata, g.truth) == (4, 14.0, -1.0, {"mag_r": 22.0}, {"t": 4})
    assert store_files() == [Path(survey.store_path).name]


def test_republishing_identical_input_changes_nothing():
    arr = images(5)
    first = publish_survey(SPEC, rows(list("abcde")), batches(arr))
    before = snapshot(first)
    with SurveyPublisher(SPEC) as pub:
        pub.append(rows(list("abcde")), arr)
    assert pub.survey.pk == first.pk
    assert pub.changes == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 5, "store_replaced": False}
    assert snapshot(first) == before
    assert Survey.objects.count() == 1 and Galaxy.objects.count() == 5
    assert store_files() == [Path(before[0]).name]   # the identical new file was discarded


def test_republishing_changed_input_updates_in_place_and_keeps_galaxy_pks(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = publish_survey(SPEC, rows(["a", "b", "c", "d"]), batches(images(4)))
    old_pks = dict(Galaxy.objects.values_list("source_id", "pk"))
    old_file = first.store_abspath
    new_ids = ["c", "a", "e"]                        # b and d removed, order changed, e new
    with django_capture_on_commit_callbacks(execute=True):
        second = publish_survey(SPEC, rows(new_ids, meta=lambda i: {"mag_r": 30.0 + i}), [images(3, seed=1)])
    assert second.pk == first.pk and second.n_galaxies == 3
    got = list(Galaxy.objects.filter(survey=second).values_list("source_id", "image_index", "metadata"))
    assert got == [("c", 0, {"mag_r": 30.0}), ("a", 1, {"mag_r": 31.0}), ("e", 2, {"mag_r": 32.0})]
    kept = dict(Galaxy.objects.values_list("source_id", "pk"))
    assert (kept["a"], kept["c"]) == (old_pks["a"], old_pks["c"])
    assert not old_file.exists()                     # removed after commit
    assert store_files() == [Path(second.store_path).name]


def test_failure_while_streaming_leaves_existing_survey_and_files_untouched():
    first = publish_survey(SPEC, rows(list("abc")), [images(3)])
    before, files = snapshot(first), store_files()

    def exploding():
        yield images(3, seed=5)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        publish_survey(SPEC, rows(list("abcdef")), exploding())
    assert snapshot(first) == before
    assert store_files() == files                    # no .partial, no new .h5


def test_failure_in_the_database_step_rolls_back_and_removes_the_new_file(monkeypatch):
    first = publish_survey(SPEC, rows(list("abc")), [images(3)])
    before, files = snapshot(first), store_files()
    from webapp.catalog.services import surveys

    def broken_create(*args, **kwargs):
        raise RuntimeError("database went away")
    monkeypatch.setattr(surveys.Galaxy.objects, "bulk_create", broken_create)
    from webapp.catalog.services import galaxy_rows
    monkeypatch.setattr(galaxy_rows, "_galaxy_copy", broken_create)   # PostgreSQL writes new rows by COPY
    with pytest.raises(RuntimeError, match="database went away"):
        publish_survey(SPEC, rows(list("abcz")), [images(4, seed=3)])
    assert snapshot(first) == before
    assert store_files() == files


@pytest.mark.parametrize("bad_rows, bad_images, message", [
    (["a", "a"], images(2), "duplicate source_id 'a'"),
    (["a", "b"], images(3), "more images than rows"),
    (["a", "b", "c"], images(2), "3 rows but 2 images"),
    (["a"], np.zeros((1, 3, 8, 8), np.float32), "do not fit 2 bands"),
    (["a"], np.full((1, 2, 8, 8), np.nan, np.float32), "non-finite"),
])
def test_invalid_input_raises_and_writes_nothing(bad_rows, bad_images, message):
    with pytest.raises((PublishError, ValueError), match=message):
        publish_survey(SPEC, rows(bad_rows), [bad_images])
    assert Survey.objects.count() == 0 and store_files() == []


def test_spec_and_row_validation():
    with pytest.raises(PublishError, match="needs a name"):
        publish_survey({**SPEC, "name": " "}, rows(["a"]), [images(1)])
    with pytest.raises(PublishError, match="unknown survey spec keys"):
        publish_survey({**SPEC, "colour": "red"}, rows(["a"]), [images(1)])
    with pytest.raises(PublishError, match="outside"):
        publish_survey(SPEC, [GalaxyRow("a", ra=400.0, dec=0.0)], [images(1)])
    with pytest.raises(PublishError, match="JSON"):
        publish_survey(SPEC, [GalaxyRow("a", metadata={"x": float("nan")})], [images(1)])
    with pytest.raises(PublishError, match="no galaxies"):
        publish_survey(SPEC, [], [])
    assert Survey.objects.count() == 0 and store_files() == []


def test_slug_is_made_unique_for_a_new_name():
    publish_survey({**SPEC, "name": "Tiny"}, rows(["a"]), [images(1)])
    other = publish_survey({**SPEC, "name": "tiny"}, rows(["a"]), [images(1)])
    assert other.slug == "tiny-2"


def test_delete_survey_removes_rows_and_file_after_commit(django_capture_on_commit_callbacks):
    survey = publish_survey(SPEC, rows(list("ab")), [images(2)])
    path = survey.store_abspath
    with django_capture_on_commit_callbacks(execute=True):
        delete_survey(survey)
    assert not Survey.objects.exists() and not Galaxy.objects.exists()
    assert not path.exists()
