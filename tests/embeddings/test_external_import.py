"""Bring your own embeddings: the import service (atomic, re-run safe), the commands, the import
page and job, the Parquet export (round trip) and the pipeline on an imported set."""
import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from ml import atomic
from webapp.catalog.models import Galaxy, Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services import external
from webapp.embeddings.services.external import AlreadyImported, ImportOptions, ImportProblem, import_embeddings
from webapp.embeddings.services.vectors import load_embedding_set, sha256_array
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
D = 8


@pytest.fixture(autouse=True)
def _no_heartbeat_thread(monkeypatch):
    class Quiet:
        def __init__(self, *a, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(services, "Heartbeat", Quiet)


def table_file(path, n=50, bad=False, seed=0, clusters=1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4, size=(clusters, D))
    vectors = (centres[np.arange(n) % clusters] + rng.normal(size=(n, D))).astype(np.float32)
    ids = [f"LS-{seed}-{i}" for i in range(n)]
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-30, 30, n)
    lists = [list(v) for v in vectors]
    if bad:
        lists[1] = lists[1][:3]          # wrong length
        lists[2][0] = float("nan")       # NaN
        ids[3] = ids[0]                  # duplicate
        ra[4] = np.nan                   # missing RA
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "ra": ra, "dec": dec,
                             "embedding": pa.array(lists, pa.list_(pa.float32())),
                             "mag_r": np.round(rng.uniform(14, 20, n), 3), "morph": ["E", "S"] * (n // 2) + ["E"] * (n % 2)}),
                   path, row_group_size=16)
    return ids, ra, dec, vectors


def counts():
    return (Survey.objects.count(), Galaxy.objects.count(), Encoder.objects.count(), EmbeddingSet.objects.count())


def artifact_files(settings):
    root = Path(settings.DATA_DIR) / "embeddings"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_import_creates_catalogue_only_survey_external_encoder_and_ready_set(tmp_path):
    ids, ra, dec, vectors = table_file(tmp_path / "in" / "t.parquet")
    report = import_embeddings(tmp_path / "in" / "t.parquet", ImportOptions(name="AstroPT test"))
    survey = Survey.objects.get(pk=report.survey_id)
    assert (survey.name, survey.image_kind, survey.status, survey.n_galaxies, survey.has_images) == (
        "AstroPT test", "none", "ready", 50, False)
    encoder = Encoder.objects.get(pk=report.encoder_id)
    assert (encoder.source, encoder.status, encoder.method) == ("external", "ready", "external")
    assert {k: encoder.config[k] for k in ("file", "layout", "rows", "imported", "skipped", "dim")} == {
        "file": "t.parquet", "layout": "latentsky", "rows": 50, "imported": 50, "skipped": 0, "dim": D}
    assert encoder.config["sha256"] == report.sha256 and len(report.sha256) == 64
    assert encoder.config["columns"] == {"id": "id", "ra": "ra", "dec": "dec", "embedding": "embedding"}
    es = EmbeddingSet.objects.get(pk=report.embedding_set_id)
    assert (es.status, es.n, es.dim, list(es.surveys.all())) == (ArtifactStatus.READY, 50, D, [survey])
    set_ids, set_vectors, _ = load_embedding_set(es)
    np.testing.assert_array_equal(set_vectors, vectors)
    assert es.checksum == sha256_array(vectors)
    galaxies = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
    assert [g.pk for g in galaxies] == set_ids.tolist()
    assert [g.source_id for g in galaxies] == ids and [g.image_index for g in galaxies] == list(range(50))
    assert galaxies[3].ra == pytest.approx(ra[3]) and galaxies[3].dec == pytest.approx(dec[3])
    assert set(galaxies[0].metadata) == {"mag_r", "morph"} and galaxies[1].metadata["morph"] == "S"


def test_imported_rows_carry_the_sky_columns_so_cone_search_finds_them(tmp_path):
    """The import writes through the catalogue's bulk writer: HEALPix cell and magnitude filled."""
    from webapp.catalog.services import sky
    ids, ra, dec, _ = table_file(tmp_path / "t.parquet")
    report = import_embeddings(tmp_path / "t.parquet")
    galaxies = list(Galaxy.objects.filter(survey_id=report.survey_id).order_by("image_index"))
    assert all(g.healpix is not None for g in galaxies)
    assert [g.mag for g in galaxies] == pytest.approx([g.metadata["mag_r"] for g in galaxies])
    found, distances, n_in_cone = sky.cone_search(galaxies[7].survey, sky.parse_cone(ra[7], dec[7], 0.01))
    assert found[0].source_id == ids[7] and distances[0] < 1e-6 and n_in_cone >= 1


def test_bad_rows_are_reported_and_good_rows_kept(tmp_path):
    table_file(tmp_path / "bad.parquet", bad=True)
    report = import_embeddings(tmp_path / "bad.parquet")
    assert (report.n_rows, report.imported, report.skipped) == (50, 46, 4)
    assert [line.split(":")[0] for line in report.errors] == ["row 1 (id LS-0-1)", "row 2 (id LS-0-2)",
                                                              "row 3 (id LS-0-0)", "row 4 (id LS-0-4)"]
    assert "duplicate id" in report.errors[2]
    assert sorted(Galaxy.objects.values_list("source_id", flat=True)) == sorted(
        f"LS-0-{i}" for i in range(50) if i not in (1, 2, 3, 4))
    assert EmbeddingSet.objects.get().n == 46


def test_rerun_of_the_same_file_is_refused_and_changes_nothing(tmp_path, settings):
    table_file(tmp_path / "t.parquet")
    import_embeddings(tmp_path / "t.parquet", ImportOptions(name="first"))
    before, files = counts(), artifact_files(settings)
    with pytest.raises(AlreadyImported, match="already imported as encoder"):
        import_embeddings(tmp_path / "t.parquet", ImportOptions(name="second"))
    table_file(tmp_path / "other.parquet", seed=1)
    with pytest.raises(AlreadyImported, match="a survey named 'first'"):
        import_embeddings(tmp_path / "other.parquet", ImportOptions(name="first"))
    assert counts() == before and artifact_files(settings) == files


def test_failure_midway_leaves_nothing(tmp_path, settings, monkeypatch):
    table_file(tmp_path / "t.parquet", n=60)
    monkeypatch.setattr(external, "INSERT_BATCH", 10)
    written = []
    original = external.insert_galaxies

    def failing(survey, rows, **kwargs):
        def rows_then_failure():
            for i, row in enumerate(rows):
                if i == 25:
                    raise RuntimeError("database went away")
                yield row
        kwargs["progress"] = lambda done, total, message: written.append(done)
        return original(survey, rows_then_failure(), **kwargs)
    monkeypatch.setattr(external, "insert_galaxies", failing)
    with pytest.raises(RuntimeError, match="went away"):
        import_embeddings(tmp_path / "t.parquet")
    # the first batch was inserted before the failure (the next batch is read while the one
    # before it is being copied, so the failing read ends the second batch's COPY)...
    assert written == [10]
    assert counts() == (0, 0, 0, 0)     # ...and rolled back with everything else
    assert not (Path(settings.DATA_DIR) / "embeddings").exists() or not any(
        (Path(settings.DATA_DIR) / "embeddings").iterdir())
    monkeypatch.setattr(external, "insert_galaxies", original)
    assert import_embeddings(tmp_path / "t.parquet").imported == 60   # the same file imports afterwards


def test_no_good_rows_and_unreadable_files_change_nothing(tmp_path, settings):
    pq.write_table(pa.table({"id": ["a"], "ra": [np.nan], "dec": [1.0],
                             "embedding": pa.array([[1.0, 2.0]], pa.list_(pa.float32()))}), tmp_path / "none.parquet")
    with pytest.raises(ImportProblem, match="no row of none.parquet could be imported"):
        import_embeddings(tmp_path / "none.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ImportProblem, match="not a readable Parquet file"):
        import_embeddings(tmp_path / "junk.parquet")
    with pytest.raises(ImportProblem, match="unknown layout"):
        import_embeddings(tmp_path / "junk.parquet", ImportOptions(layout="nope"))
    assert counts() == (0, 0, 0, 0) and artifact_files(settings) == []


def test_the_checksum_taken_during_validation_is_the_files_and_a_refused_file_stops_it(tmp_path, monkeypatch):
    table_file(tmp_path / "t.parquet")
    report = import_embeddings(tmp_path / "t.parquet")
    assert report.sha256 == hashlib.sha256((tmp_path / "t.parquet").read_bytes()).hexdigest()
    assert Encoder.objects.get().config["sha256"] == report.sha256
    assert set(report.phases) == {"validate", "checksum", "rows_and_vectors"}
    # validation refuses a big file early: the hashing thread is told to stop, not left reading
    real_sha256 = hashlib.sha256

    class SlowSha256:              # 2,149 blocks of 1 KiB at >= 1 ms each: still hashing when refused
        def __init__(self):
            self.digest = real_sha256()

        def update(self, data):
            time.sleep(0.001)
            self.digest.update(data)

        def hexdigest(self):
            return self.digest.hexdigest()
    monkeypatch.setattr(atomic, "HASH_BLOCK", 1024)
    monkeypatch.setattr(atomic.hashlib, "sha256", SlowSha256)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet" * 200_000)
    started = []
    original = external._BackgroundChecksum.__init__

    def spy(self, path):
        original(self, path)
        started.append(self)
    monkeypatch.setattr(external._BackgroundChecksum, "__init__", spy)
    with pytest.raises(ImportProblem, match="not a readable Parquet file"):
        import_embeddings(tmp_path / "junk.parquet")
    started[0]._thread.join(timeout=10)
    assert not started[0]._thread.is_alive() and started[0]._digest != real_sha256(
        (tmp_path / "junk.parquet").read_bytes()).hexdigest()


def test_command_exits_non_zero_with_a_summary_when_rows_were_skipped(tmp_path):
    table_file(tmp_path / "bad.parquet", bad=True)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"4 row\(s\) skipped"):
        call_command("import_embeddings", str(tmp_path / "bad.parquet"), "--name", "cli", stdout=out, stderr=err)
    text = out.getvalue()
    assert "skipped row 1 (id LS-0-1): vector is missing or not of length 8" in text
    assert "46 of 50 rows imported (4 skipped)" in text
    assert Survey.objects.get().name == "cli" and Galaxy.objects.count() == 46
    table_file(tmp_path / "good.parquet", seed=3)
    call_command("import_embeddings", str(tmp_path / "good.parquet"), "--survey-name", "good one",
                 stdout=out, stderr=err)
    assert Survey.objects.filter(name="good one", n_galaxies=50).exists()
    with pytest.raises(CommandError, match="already imported"):
        call_command("import_embeddings", str(tmp_path / "good.parquet"), stdout=out, stderr=err)


def test_round_trip_export_then_import(tmp_path):
    ids, ra, dec, vectors = table_file(tmp_path / "t.parquet", n=45)
    first = import_embeddings(tmp_path / "t.parquet", ImportOptions(name="original"))
    call_command("export_embeddings", str(first.embedding_set_id), str(tmp_path / "out.parquet"),
                 stdout=io.StringIO(), stderr=io.StringIO())
    second = import_embeddings(tmp_path / "out.parquet", ImportOptions(name="copy"))
    assert (second.imported, second.skipped) == (45, 0)

    def rows(report):
        es = EmbeddingSet.objects.get(pk=report.embedding_set_id)
        set_ids, set_vectors, _ = load_embedding_set(es)
        by_pk = Galaxy.objects.in_bulk(set_ids.tolist())
        return ([(by_pk[g].source_id, by_pk[g].ra, by_pk[g].dec, by_pk[g].metadata) for g in set_ids.tolist()],
                np.asarray(set_vectors), es.checksum)
    a, b = rows(first), rows(second)
    assert a[0] == b[0] and [r[0] for r in a[0]] == ids
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    meta = Encoder.objects.get(pk=second.encoder_id).config["source_metadata"]
    assert (meta["embedding_set"], meta["name"], meta["n"]) == (first.embedding_set_id, "original", 45)


def test_download_link_streams_the_same_table(tmp_path, role_clients):
    ids, _, _, vectors = table_file(tmp_path / "t.parquet", n=30)
    report = import_embeddings(tmp_path / "t.parquet", ImportOptions(name="dl"))
    response = role_clients["viewer"].get(f"/embedding-sets/{report.embedding_set_id}/embeddings.parquet")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="dl-set{report.embedding_set_id}.parquet"'
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    assert table.column("id").to_pylist() == ids and table.column_names[:4] == ["id", "ra", "dec", "embedding"]
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), vectors)
    page = role_clients["viewer"].get(f"/encoders/{report.encoder_id}/")
    assert page.status_code == 200
    assert f'href="/embedding-sets/{report.embedding_set_id}/embeddings.parquet"'.encode() in page.content
    assert b'id="download-checkpoint"' not in page.content   # an external encoder has no checkpoint


def test_catalogue_only_pages_show_placeholder_thumbnails(tmp_path, role_clients):
    from webapp.catalog.services.render import placeholder_png
    table_file(tmp_path / "t.parquet", n=20)
    report = import_embeddings(tmp_path / "t.parquet", ImportOptions(name="thumbless"))
    galaxy = Galaxy.objects.filter(survey_id=report.survey_id).first()
    client = role_clients["viewer"]
    thumb = client.get(f"/thumbs/{galaxy.pk}.png?size=96")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    assert thumb.content == placeholder_png(96) and thumb.content.startswith(b"\x89PNG")
    assert client.get(f"/thumbs/{galaxy.pk}.png?size=320").content == placeholder_png(320)
    for url in ("/surveys/", f"/surveys/{report.slug}/", f"/galaxies/{galaxy.pk}/"):
        assert client.get(url).status_code == 200, url


# ----------------------------------------------------------------- the browser page and job

@pytest.fixture
def imports(settings):
    root = Path(settings.DATA_DIR) / "imports"
    table_file(root / "sky.parquet", n=40, bad=True)
    return root


def test_import_page_is_for_curators(role_clients, imports):
    page = role_clients["curator"].get("/encoders/import/")
    assert page.status_code == 200 and b'value="sky.parquet"' in page.content
    assert role_clients["viewer"].get("/encoders/import/").status_code == 403
    assert role_clients["labeler"].post("/encoders/import/", {"path": "sky.parquet", "layout": "latentsky"}
                                        ).status_code == 403
    assert not Job.objects.exists()


def test_curator_queues_the_job_and_it_imports_with_progress(role_clients, imports):
    response = role_clients["curator"].post("/encoders/import/", {"path": "sky.parquet", "layout": "latentsky",
                                                                  "name": "Sky table"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert (job.kind, job.queue, job.params) == ("import_embeddings", "cpu",
                                                  {"path": "sky.parquet", "layout": "latentsky", "name": "Sky table"})
    assert services.execute_job(job.pk, "test-worker") == "succeeded"
    job.refresh_from_db()
    assert (job.progress, job.result["imported"], job.result["skipped"]) == (1.0, 36, 4)
    assert job.result["errors"][0].startswith("row 1 (id LS-0-1): vector is missing")
    es = EmbeddingSet.objects.get(pk=job.result["embedding_set_id"])
    assert es.job_id == job.pk and es.encoder.created_by.username == "curator-user"


def test_the_job_refuses_paths_outside_the_imports_folder(imports, tmp_path):
    table_file(tmp_path / "outside.parquet")
    for path in ("../../outside.parquet", str(tmp_path / "outside.parquet"), "missing.parquet"):
        job = services.create_job("import_embeddings", {"path": path}, dispatch=False)
        assert services.execute_job(job.pk, "test-worker") == "failed"
        job.refresh_from_db()
        assert "imports folder" in job.error or "no such file" in job.error
    assert counts() == (0, 0, 0, 0)


def test_unknown_file_choice_is_a_form_error(role_clients, imports):
    response = role_clients["curator"].post("/encoders/import/", {"path": "../x.parquet", "layout": "latentsky"})
    assert response.status_code == 400 and not Job.objects.exists()


# ----------------------------------------------------------------- the pipeline on an imported set

@pytest.mark.slow
def test_index_map_and_scores_run_on_an_imported_set(tmp_path):
    table_file(tmp_path / "t.parquet", n=300, clusters=3)
    report = import_embeddings(tmp_path / "t.parquet", ImportOptions(name="pipeline"))

    def run(kind, params):
        job = services.create_job(kind, params, dispatch=False)
        status = services.execute_job(job.pk, "test-worker")
        job.refresh_from_db()
        assert status == "succeeded", job.error
        return job
    run("build_index", {"embedding_set_id": report.embedding_set_id})
    es = EmbeddingSet.objects.get(pk=report.embedding_set_id)
    assert es.index_status == "ready"
    job = run("umap", {"embedding_set_id": es.pk, "config": {"n_neighbors": 8, "n_epochs": 30, "seed": 0}})
    from webapp.embeddings.models import LatentMap
    lm = LatentMap.objects.get(pk=job.result["latent_map_id"])
    assert (lm.status, lm.n) == ("ready", 300)
    job = run("anomaly_scores", {"embedding_set_id": es.pk})
    assert job.result["n"] == 300
