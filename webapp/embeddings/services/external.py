"""Bring your own embeddings: import an embedding table made elsewhere as a catalogue-only
survey + external encoder + embedding set, all or nothing.

    report = import_embeddings("/data/imports/aion.parquet", ImportOptions(layout="aion_ls"))

What is created (the reader, validation and layouts are in ml/embedding_table.py):
- a Survey with ``image_kind="none"`` (no image store; pages show a placeholder cutout),
- one Galaxy row per good table row (``image_index`` = row in the embedding set, catalogue
  columns in ``metadata``), written in batches of INSERT_BATCH by the catalogue's one bulk
  writer (services.galaxy_rows.insert_galaxies: COPY on PostgreSQL, ``bulk_create``
  elsewhere), which also fills the HEALPix and magnitude columns for cone search and sorting,
- an Encoder with ``source="external"`` whose ``config`` holds the provenance (file name,
  sha256, layout, column mapping, row counts),
- an EmbeddingSet whose vectors are written block by block into a ``.npy`` (header, then bytes).

Steps: pass 1 validates every row (bounded memory) while a thread takes the file's sha256;
pass 2, in ONE transaction, appends each block's vectors to ``vectors.npy.partial`` in a fresh
directory and streams its Galaxy rows to the database, then renames the vector file into place
and flips the set from building to ready (the publish step).  Any failure rolls the
transaction back and removes the directory: no survey, no rows, no files.  Progress during
pass 2 is written inside that transaction, so a browser sees it jump at the end of the step.

Re-runs are refused, with nothing changed: a file whose sha256 was already imported
(AlreadyImported names the existing set), or a survey name already taken.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils.text import slugify

from ml.atomic import sha256_file
from ml.embedding_table import LAYOUTS, EmbeddingTable, TableError, get_layout, validate
from ml.progress import span
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.galaxy_rows import insert_galaxies, refresh_planner_statistics
from webapp.catalog.services.surveys import GalaxyRow
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services.vectors import new_artifact_dir

INSERT_BATCH = 20_000          # Galaxy rows per COPY / bulk_create batch (services.galaxy_rows)
PK_READ_BATCH = 200_000      # galaxy pks read back per query after the COPY
MAX_RESULT_ERRORS = 200        # problem lines kept in a job result
IMPORT_DIR = "imports"         # under DATA_DIR: files the browser may import
IMPORT_SUFFIXES = (".parquet", ".pq", ".npy")
SOURCE_ID_LENGTH = Galaxy._meta.get_field("source_id").max_length


class ImportProblem(ValueError):
    """The import cannot run (bad file, nothing good, name taken); nothing was changed."""


class AlreadyImported(ImportProblem):
    """The same file (by sha256) or survey name was imported before."""


@dataclass
class ImportOptions:
    name: str = ""               # encoder and embedding set name; default: the file's stem
    layout: str = "latentsky"    # a preset of ml.embedding_table.LAYOUTS
    id_column: str = ""          # column overrides of the layout ("" keeps the preset's)
    ra_column: str = ""
    dec_column: str = ""
    embedding_column: str = ""
    survey_name: str = ""        # default: the name
    catalog_path: str = ""       # CSV of a .npy input; default: same stem, .csv
    description: str = ""

    def resolved_layout(self):
        if self.layout and self.layout not in LAYOUTS:
            raise ImportProblem(f"unknown layout {self.layout!r}; layouts: {', '.join(LAYOUTS)}")
        return get_layout(self.layout, id=self.id_column, ra=self.ra_column, dec=self.dec_column,
                          embedding=self.embedding_column)

    @classmethod
    def from_params(cls, params: dict) -> "ImportOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ImportProblem(f"unknown import option(s) {sorted(unknown)}")
        return cls(**{k: str(v or "") for k, v in params.items()})


@dataclass
class ImportReport:
    path: str
    survey_id: int | None = None
    slug: str = ""
    encoder_id: int | None = None
    embedding_set_id: int | None = None
    n_rows: int = 0
    imported: int = 0
    skipped: int = 0
    dim: int = 0
    sha256: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)   # seconds per step: checksum, validate, vectors, rows

    def as_result(self) -> dict:
        data = asdict(self)
        data["errors"] = self.errors[:MAX_RESULT_ERRORS]
        data["errors_truncated"] = max(0, self.skipped - len(data["errors"]))
        return data

    def summary(self) -> str:
        return (f"{Path(self.path).name}: {self.imported:,} of {self.n_rows:,} rows imported "
                f"({self.skipped:,} skipped), {self.dim}-d, {self.seconds:.1f} s")


def import_root() -> Path:
    return Path(settings.DATA_DIR) / IMPORT_DIR


def importable_files() -> list[dict]:
    """Files under DATA_DIR/imports/ the browser may import: [{"name", "size"}], sorted."""
    root = import_root()
    if not root.is_dir():
        return []
    return [{"name": str(p.relative_to(root)), "size": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMPORT_SUFFIXES]


def resolve_import_path(name: str) -> Path:
    """A file name relative to DATA_DIR/imports/ (no escaping it through ``..`` or symlinks)."""
    root = import_root().resolve()
    name = (name or "").strip()
    if not name or "\x00" in name:
        raise ImportProblem("choose a file under the imports folder")
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ImportProblem(f"{name}: not under the imports folder {root}")
    if not path.is_file():
        raise ImportProblem(f"{name}: no such file under {root}")
    return path


def _survey_names(options: ImportOptions, path: Path) -> tuple[str, str, str]:
    name = (options.name or path.stem).strip()[:100]
    survey_name = (options.survey_name or name).strip()[:100]
    slug = slugify(survey_name)[:90] or "imported"
    return name, survey_name, slug


def import_embeddings(path: str | Path, options: ImportOptions | None = None, user=None, job=None,
                      progress=None) -> ImportReport:
    """Import ``path`` (Parquet, or .npy + CSV).  Raises ImportProblem (or TableError) with
    nothing changed; otherwise returns the report (good rows imported, bad rows listed)."""
    options = options or ImportOptions()
    path = Path(path)
    started = time.monotonic()
    report = ImportReport(path=str(path))
    layout = options.resolved_layout()
    name, survey_name, slug = _survey_names(options, path)
    if progress:
        progress(0, 1, f"checksum and validation of {path.name}")
    if not path.is_file():
        raise ImportProblem(f"{path}: no such file")
    checksum = _BackgroundChecksum(path)
    try:
        try:
            table = EmbeddingTable(path, layout, catalog_path=options.catalog_path or None)
        except TableError as exc:
            raise ImportProblem(str(exc)) from exc
        info = table.info
        report.n_rows, report.dim = info.n_rows, info.dim
        if info.skipped_columns:
            report.notes.append(f"list columns not kept as catalogue columns: {', '.join(info.skipped_columns)}")
        try:
            checked = validate(table, span(progress, 0.05, 0.35), max_id_length=SOURCE_ID_LENGTH)
        except TableError as exc:
            raise ImportProblem(str(exc)) from exc
        report.phases["validate"] = round(time.monotonic() - started, 2)
        report.sha256 = checksum.result()
    finally:
        checksum.stop()
    report.phases["checksum"] = checksum.seconds
    previous = Encoder.objects.filter(source=Encoder.Source.EXTERNAL, config__sha256=report.sha256).first()
    if previous is not None:
        sets = ", ".join(str(pk) for pk in previous.embedding_sets.values_list("pk", flat=True))
        raise AlreadyImported(f"{path.name} (sha256 {report.sha256[:12]}) was already imported as encoder "
                              f"{previous.pk} ({previous.name}), embedding set {sets or '-'}; nothing changed")
    if Survey.objects.filter(name=survey_name).exists() or Survey.objects.filter(slug=slug).exists():
        raise AlreadyImported(f"a survey named {survey_name!r} (slug {slug}) already exists; choose another "
                              "survey name; nothing changed")
    report.skipped = checked.n_errors
    report.errors = [str(e) for e in checked.errors[:MAX_RESULT_ERRORS]]
    n_good = checked.n_good
    if n_good == 0:
        raise ImportProblem(f"no row of {path.name} could be imported ({checked.n_errors} problems"
                            f"{': ' + str(checked.errors[0]) if checked.errors else ''}); nothing changed")
    directory, relative = new_artifact_dir("import")
    try:
        provenance = {
            "file": path.name, "sha256": report.sha256, "kind": info.kind, "layout": options.layout or "latentsky",
            "columns": info.layout, "catalog_columns": info.catalog_columns,
            "skipped_columns": info.skipped_columns, "rows": info.n_rows, "imported": n_good,
            "skipped": checked.n_errors, "dim": info.dim, "source_metadata": info.file_metadata,
        }
        rows_started = time.monotonic()
        with transaction.atomic():
            survey = Survey.objects.create(
                name=survey_name, slug=slug, image_kind=Survey.ImageKind.NONE, bands=[],
                status=Survey.Status.INGESTING, description=options.description,
                provenance=f"Imported embedding table {path.name} (sha256 {report.sha256}), layout "
                           f"{provenance['layout']} {info.layout}")
            checksum_of_vectors = _write_rows_and_vectors(table, checked.keep, survey, n_good,
                                                          directory / "vectors.npy.partial", span(progress, 0.35, 0.95))
            galaxy_ids = _pks_in_row_order(survey, n_good)
            encoder = Encoder.objects.create(
                name=name, method="external", source=Encoder.Source.EXTERNAL, status=ArtifactStatus.READY,
                config=provenance, created_by=user if getattr(user, "pk", None) else None)
            encoder.surveys.set([survey])
            es = EmbeddingSet.objects.create(encoder=encoder, name=name, dim=info.dim, n=n_good,
                                             status=ArtifactStatus.BUILDING, job=job)
            es.surveys.set([survey])
            # -- publish: files into place, rows ready (still inside the transaction)
            np.save(directory / "ids.npy", galaxy_ids, allow_pickle=False)
            os.replace(directory / "vectors.npy.partial", directory / "vectors.npy")
            es.vectors_path, es.ids_path = f"{relative}/vectors.npy", f"{relative}/ids.npy"
            es.checksum, es.status = checksum_of_vectors, ArtifactStatus.READY
            es.save(update_fields=["vectors_path", "ids_path", "checksum", "status"])
            Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.READY, n_galaxies=n_good)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if not connection.in_atomic_block:   # inside a caller's transaction the caller analyses after it
        refresh_planner_statistics()
    report.survey_id, report.slug, report.encoder_id, report.embedding_set_id = survey.pk, slug, encoder.pk, es.pk
    report.imported = n_good
    report.seconds = round(time.monotonic() - started, 3)
    report.phases["rows_and_vectors"] = round(time.monotonic() - rows_started, 2)
    if progress:
        progress(1, 1, report.summary())
    return report


class _BackgroundChecksum:
    """sha256 of the file in a thread while validation reads it: hashlib releases the GIL on
    large blocks, and at 10^7 rows the two one after the other took 21 s + 57 s.  ``stop()``
    ends an unfinished hash early (validation refused the file)."""

    def __init__(self, path: Path):
        self.path, self.seconds = path, 0.0
        self._digest, self._error = None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="import-checksum")
        self._thread.start()

    def _run(self):
        started = time.monotonic()
        try:
            self._digest = sha256_file(self.path, stop=self._stop)
        except OSError as exc:
            self._error = exc
        self.seconds = round(time.monotonic() - started, 2)

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise ImportProblem(f"{self.path.name}: unreadable ({self._error})")
        return self._digest

    def stop(self) -> None:
        self._stop.set()


def _write_rows_and_vectors(table: EmbeddingTable, keep: np.ndarray, survey: Survey, n_good: int,
                            partial: Path, progress) -> str:
    """One pass over the table: each block's good vectors are appended to an (n_good, D) float32
    .npy (the header of np.lib.format, then each block's bytes: memory is one block, and the file
    is what ``np.load(mmap_mode="r")`` reads) while its Galaxy rows go to the catalogue's one bulk
    writer (services.galaxy_rows: COPY on PostgreSQL, with the HEALPix and magnitude columns),
    image_index = row of the set.  One pass, so that the vector file is written while the
    database indexes rows.  Returns the sha256 of the raw array bytes (the EmbeddingSet.checksum
    convention of services.vectors)."""
    digest = hashlib.sha256()
    vectors_written = 0
    catalog = table.info.catalog_columns
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (n_good, table.info.dim)}
    with open(partial, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)

        def rows():   # no database access in here: insert_galaxies pulls it inside a COPY
            nonlocal vectors_written
            for block in table.blocks():
                good = keep[block.start:block.start + len(block)]
                data = np.ascontiguousarray(block.vectors[good], dtype=np.float32).tobytes()
                handle.write(data)
                digest.update(data)
                vectors_written += int(good.sum())
                ras, decs, ids = block.ra.tolist(), block.dec.tolist(), block.ids
                for i in np.flatnonzero(good).tolist():
                    yield GalaxyRow(ids[i], ras[i], decs[i], {c: block.columns[c][i] for c in catalog})

        def said(done, total, _message):
            progress(done, total, f"wrote {done:,} of {total:,} galaxy rows and vectors")

        written = insert_galaxies(survey, rows(), batch_size=INSERT_BATCH, total=n_good,
                                  progress=said if progress else None)
        handle.flush()
        os.fsync(handle.fileno())
    if written != n_good or vectors_written != n_good:
        raise ImportProblem(f"{table.path.name} changed while importing ({written} good rows, expected {n_good})")
    return digest.hexdigest()


def _pks_in_row_order(survey: Survey, count: int) -> np.ndarray:
    """The pks of the survey's rows by image_index 0 .. count-1 (indexed range reads of
    PK_READ_BATCH rows: COPY returns no pks)."""
    pks = np.zeros(count, dtype=np.int64)
    for lo in range(0, count, PK_READ_BATCH):
        hi = min(count, lo + PK_READ_BATCH)
        chunk = np.fromiter(Galaxy.objects.filter(survey=survey, image_index__gte=lo, image_index__lt=hi)
                            .order_by("image_index").values_list("pk", flat=True), dtype=np.int64)
        if len(chunk) != hi - lo:
            raise ImportProblem(f"inserted {count} galaxy rows but read back {len(chunk)} of rows {lo}-{hi - 1}")
        pks[lo:hi] = chunk
    return pks


def run_import_job(job, progress) -> dict:
    """The "import_embeddings" job (queue cpu).  Params: {"path": file under DATA_DIR/imports/,
    plus ImportOptions fields}.  Result: ImportReport.as_result()."""
    params = {k: v for k, v in (job.params or {}).items() if not k.startswith("_")}
    path = resolve_import_path(params.pop("path", ""))
    options = ImportOptions.from_params(params)
    if options.catalog_path:
        options.catalog_path = str(resolve_import_path(options.catalog_path))
    report = import_embeddings(path, options, user=job.launched_by, job=job, progress=progress)
    return report.as_result()
