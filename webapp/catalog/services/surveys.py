"""Publish a survey atomically: image store file + Survey row + Galaxy rows, all or nothing.

This is the ONE place that writes surveys; ingestion and the simulator both call it.

    from webapp.catalog.services.surveys import GalaxyRow, publish_survey
    survey = publish_survey(
        {"name": "SDSS GZ1", "bands": ["R", "G", "B"], "image_kind": "rgb", ...},
        rows=[GalaxyRow("588848901537202306", metadata={"gz1_class": 0}), ...],
        images=batches,            # iterable of (n, C, H, W) float32, in row order
        progress=callback)         # optional progress(done, total, message)

or, when rows are only known while images are decoded, stream both together:

    with SurveyPublisher(spec) as pub:
        pub.append(rows_batch, images_batch)   # as often as needed
    survey = pub.survey                        # published on a clean exit

Guarantees:
- Pixels go to ``DATA_DIR/surveys/<slug>-<uuid8>.h5.partial`` and are renamed to
  ``.h5`` only once complete (ml.imagestore); the Survey and Galaxy rows are then
  written in ONE transaction.  Any failure removes the new file and leaves the
  database, and an existing survey of that name, exactly as they were.
- Re-publishing a survey of the same name updates it in place: the Survey keeps its
  primary key and slug, and galaxies are matched by ``source_id``, so a galaxy that
  is still present keeps its primary key (and with it people's labels, reviews and
  scores, which cascade on Galaxy deletion).  Galaxies no longer present are deleted.
- Publishing identical input again changes nothing: same checksum, same rows, and
  the existing store file is kept (the new identical file is discarded).
- The replaced store file is deleted only after the transaction commits.
- Memory is bounded: appended rows are spooled to a temporary file beside the store
  (only an 8-byte hash per source_id stays in RAM, for the duplicate check), and a new
  survey's Galaxy rows are streamed from the spool through galaxy_rows.insert_galaxies
  (COPY on PostgreSQL) in batches, inside the one publishing transaction.  Re-publishing
  over a survey that already has galaxies diffs against them in memory (O(existing)).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import tempfile
import uuid
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils.text import slugify

from ml.imagestore import ImageStoreWriter
from ml.progress import Progress
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.galaxy_rows import (BATCH_SIZE, insert_galaxies, refresh_planner_statistics,
                                                 sky_columns)

log = logging.getLogger(__name__)

STORE_DIR = "surveys"          # under DATA_DIR
CREATE_BATCH = 2000            # Galaxy rows per INSERT
UPDATE_BATCH = 500             # rows per bulk UPDATE (its CASE expressions grow with the batch)
# Survey fields a spec may set; name is required, slug optional (derived from name).
SPEC_FIELDS = ("description", "bands", "image_kind", "pixel_scale_arcsec", "psf_fwhm_arcsec",
               "zero_points", "depth", "provenance", "viewer_url_template", "is_simulated")


class PublishError(ValueError):
    """The spec, rows or images cannot form a valid survey (nothing was changed)."""


class StorageError(PublishError):
    """The image store could not be written (disk full, read-only, no permission); nothing was changed."""


@contextmanager
def _storage_guard(what: str):
    """Turn an OS-level write failure into StorageError with a message a curator can act on."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc).splitlines()[0]
        raise StorageError(f"cannot write {what} under the data directory {settings.DATA_DIR}: {reason}; "
                           "nothing was changed (free space or fix permissions, then re-run)") from exc


@dataclass
class GalaxyRow:
    """One catalogue object; its image is the store row with the same position."""
    source_id: str                                  # survey catalogue id, e.g. SDSS objID
    ra: float | None = None                         # degrees, ICRS
    dec: float | None = None                        # degrees, ICRS
    metadata: dict = field(default_factory=dict)    # catalogue columns shown to people (JSON)
    truth: dict = field(default_factory=dict)       # simulation ground truth, never shown (JSON)


def publish_survey(spec: dict, rows: Sequence[GalaxyRow], images: Iterable[np.ndarray],
                   progress: Progress | None = None) -> Survey:
    """Write ``images`` (batches in row order) and ``rows`` as survey ``spec["name"]``.

    ``len(rows)`` must equal the total number of images.  Returns the published
    Survey (status ready).  Raises PublishError (or the error of ``images``)
    with nothing changed.
    """
    rows = list(rows)
    with SurveyPublisher(spec, progress=progress, expected=len(rows)) as pub:
        for batch in images:
            batch = np.asarray(batch)
            if batch.ndim == 3:
                batch = batch[None]
            start = pub.n
            if start + len(batch) > len(rows):
                raise PublishError(f"more images than rows ({len(rows)})")
            pub.append(rows[start:start + len(batch)], batch)
        if pub.n != len(rows):
            raise PublishError(f"{len(rows)} rows but {pub.n} images")
    return pub.survey


def delete_survey(survey: Survey) -> None:
    """Delete a survey, its galaxies (and rows that cascade from them) and, after commit, its store file."""
    path = survey.store_abspath if survey.store_path else None
    with transaction.atomic():
        Survey.objects.filter(pk=survey.pk).delete()
        if path is not None:
            transaction.on_commit(lambda: _remove(path))


class SurveyPublisher:
    """Stream (rows, images) batches into a new image store; publish atomically on commit().

    Used as a context manager: a clean exit commits, an exception aborts
    (removing the partial file).  After commit, ``survey`` is the Survey and
    ``changes`` counts galaxies created/updated/unchanged/deleted and says
    whether the store file was replaced.
    """

    def __init__(self, spec: dict, progress: Progress | None = None, expected: int = 0):
        self.spec = _clean_spec(spec)
        self.progress = progress
        self.expected = expected        # total rows, for progress only (0 = unknown)
        self.survey: Survey | None = None
        self.changes: dict = {}
        self._n = 0
        self._spool = None               # temporary file of pickled row batches
        self._hashes: list[np.ndarray] = []  # int64 hash of each source_id, per batch
        self._writer: ImageStoreWriter | None = None
        self._rel_path = ""
        self._closed = False

    @property
    def n(self) -> int:
        return self._n

    @property
    def rows(self) -> list[GalaxyRow]:
        """Every appended row, read back from the spool (O(n) memory: for small surveys and tests)."""
        return list(self._iter_rows())

    def _iter_rows(self):
        if self._spool is None:
            return
        self._spool.flush()
        with open(self._spool.name, "rb") as spool:
            while True:
                try:
                    batch = pickle.load(spool)
                except EOFError:
                    return
                yield from (GalaxyRow(*t) for t in batch)

    def append(self, rows: Sequence[GalaxyRow], images: np.ndarray) -> None:
        """Add ``len(rows)`` galaxies and their (n, C, H, W) float32 images (finite, square)."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or len(images) != len(rows):
            raise PublishError(f"{len(rows)} rows but images of shape {images.shape}; want (n, C, H, W)")
        n_bands = len(self.spec["bands"])
        if images.shape[1] != n_bands or images.shape[2] != images.shape[3]:
            raise PublishError(f"images of shape {images.shape[1:]} do not fit {n_bands} bands "
                               f"{self.spec['bands']} of square cutouts")
        clean = [_clean_row(r) for r in rows]
        hashes = np.asarray([_id_hash(r.source_id) for r in clean], dtype=np.int64)
        seen = {}
        for row, h in zip(clean, hashes.tolist()):   # duplicates inside this batch
            if seen.get(h) == row.source_id:
                raise PublishError(f"duplicate source_id {row.source_id!r}")
            seen[h] = row.source_id
        with _storage_guard("the image store"):
            if self._writer is None:
                self._open_writer(images.shape[2])
            self._writer.append(images.astype(np.float32, copy=False))
            pickle.dump([(r.source_id, r.ra, r.dec, r.metadata, r.truth) for r in clean], self._spool,
                        protocol=pickle.HIGHEST_PROTOCOL)
        self._hashes.append(hashes)
        self._n += len(clean)
        if self.progress:
            self.progress(self.n, max(self.expected, self.n), f"wrote {self.n} images")

    def commit(self) -> Survey:
        if self.survey is not None:
            return self.survey
        if self._writer is None or self.n == 0:
            self.abort()
            raise PublishError(f"survey {self.spec['name']!r} has no galaxies to publish")
        try:
            self._check_duplicates()
            with _storage_guard("the image store"):
                shape, checksum = self._writer.close()
        except BaseException:
            self.abort()
            raise
        new_file = Path(settings.DATA_DIR) / self._rel_path
        try:
            if self.progress:
                self.progress(self.n, self.n, "saving catalogue rows")
            self.survey = self._save_rows(list(shape), checksum)
        except BaseException:
            _remove(new_file)
            self._close_spool()
            raise
        if self.survey.store_path != self._rel_path:   # identical pixels: the old file was kept
            _remove(new_file)
        self._closed = True
        self._close_spool()
        if not connection.in_atomic_block:   # the rows are committed: let the planner see them
            refresh_planner_statistics()
        return self.survey

    def abort(self) -> None:
        """Discard everything written so far (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._close_spool()
        if self._writer is not None:
            if self._writer.result is None:
                self._writer.abort()
            else:
                _remove(self._writer.path)

    def __enter__(self) -> "SurveyPublisher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # ------------------------------------------------------------- internals

    def _open_writer(self, size: int) -> None:
        slug = self.spec.get("slug") or slugify(self.spec["name"]) or "survey"
        self._rel_path = f"{STORE_DIR}/{slug}-{uuid.uuid4().hex[:8]}.h5"
        self._writer = ImageStoreWriter(Path(settings.DATA_DIR) / self._rel_path,
                                        bands=self.spec["bands"], size=size,
                                        attrs={"survey": self.spec["name"]},
                                        min_free_bytes=settings.DISK_HEADROOM_BYTES)
        self._spool = tempfile.NamedTemporaryFile(
            dir=(Path(settings.DATA_DIR) / self._rel_path).parent, prefix=".rows-", suffix=".partial")

    def _close_spool(self) -> None:
        if self._spool is not None:
            try:
                self._spool.close()   # NamedTemporaryFile deletes itself
            except OSError:
                log.warning("could not remove the row spool %s", self._spool.name, exc_info=True)
            self._spool = None

    def _check_duplicates(self) -> None:
        """PublishError naming a source_id that was appended twice (hash first, then the strings)."""
        if len(self._hashes) < 2:
            return
        hashes = np.concatenate(self._hashes)
        values, counts = np.unique(hashes, return_counts=True)
        suspects = set(values[counts > 1].tolist())
        if not suspects:
            return
        first: dict[int, set] = {}
        for row in self._iter_rows():
            h = _id_hash(row.source_id)
            if h in suspects:
                if row.source_id in first.setdefault(h, set()):
                    raise PublishError(f"duplicate source_id {row.source_id!r}")
                first[h].add(row.source_id)

    def _save_rows(self, shape: list, checksum: str) -> Survey:
        with transaction.atomic():
            survey = Survey.objects.select_for_update().filter(name=self.spec["name"]).first()
            old_path = None
            if survey is None:
                survey = Survey(name=self.spec["name"], slug=_free_slug(self.spec))
            elif not (survey.image_checksum == checksum and survey.store_path
                      and survey.store_abspath.exists()):
                old_path = survey.store_abspath if survey.store_path else None
            for key in SPEC_FIELDS:
                if key in self.spec:
                    setattr(survey, key, self.spec[key])
            if old_path is not None or not survey.store_path:
                survey.store_path = self._rel_path
            survey.status = Survey.Status.READY
            survey.image_shape, survey.image_checksum, survey.n_galaxies = shape, checksum, self.n
            survey.save()
            if not Galaxy.objects.filter(survey=survey).exists():
                # A new (or empty) survey: stream the spool straight in, in batches.
                created = insert_galaxies(survey, self._iter_rows(), batch_size=BATCH_SIZE,
                                          progress=self.progress, total=self.n)
                self.changes = {"created": created, "updated": 0, "deleted": 0, "unchanged": 0}
            else:
                self.changes = _sync_galaxies(survey, self.rows)
            self.changes["store_replaced"] = survey.store_path == self._rel_path
            if old_path is not None and old_path != survey.store_abspath:
                transaction.on_commit(lambda: _remove(old_path))
        return survey


def _sync_galaxies(survey: Survey, rows: list[GalaxyRow]) -> dict:
    """Make the survey's Galaxy rows equal ``rows`` (image_index = position), keeping pks by source_id."""
    existing = {sid: (pk, idx, ra, dec, meta, truth) for pk, sid, idx, ra, dec, meta, truth in
                Galaxy.objects.filter(survey=survey).values_list(
                    "pk", "source_id", "image_index", "ra", "dec", "metadata", "truth")}
    wanted = {row.source_id for row in rows}
    gone = [pk for sid, (pk, *_) in existing.items() if sid not in wanted]
    if gone:
        for start in range(0, len(gone), CREATE_BATCH):
            Galaxy.objects.filter(pk__in=gone[start:start + CREATE_BATCH]).delete()
    to_create, to_update, moved = [], [], False
    for index, row in enumerate(rows):
        old = existing.get(row.source_id)
        if old is None:
            to_create.append((index, row))
        elif old[1:] != (index, row.ra, row.dec, row.metadata, row.truth):
            moved = moved or old[1] != index
            to_update.append(Galaxy(pk=old[0], image_index=index, ra=row.ra, dec=row.dec,
                                    metadata=row.metadata, truth=row.truth))
    cells, mags = sky_columns([g for g in to_update])
    for g, cell, mag in zip(to_update, cells, mags):
        g.healpix, g.mag = cell, mag
    if moved:
        # Unique (survey, image_index) is checked row by row: park kept rows on indices
        # above every old and new index first, so the final update cannot collide.
        top = Galaxy.objects.filter(survey=survey).aggregate(m=Max("image_index"))["m"] or 0
        Galaxy.objects.filter(survey=survey).update(image_index=F("image_index") + max(top + 1, len(rows)))
        kept = {pk: idx for sid, (pk, idx, *_) in existing.items() if sid in wanted}
        updated = {g.pk for g in to_update}
        to_update += [Galaxy(pk=pk, image_index=idx) for pk, idx in kept.items() if pk not in updated]
        fields = ["image_index", "ra", "dec", "metadata", "truth", "healpix", "mag"]
        full = [g for g in to_update if g.pk in updated]
        Galaxy.objects.bulk_update(full, fields, batch_size=UPDATE_BATCH)
        Galaxy.objects.bulk_update([g for g in to_update if g.pk not in updated], ["image_index"],
                                   batch_size=UPDATE_BATCH)
        n_updated = len(full)
    else:
        Galaxy.objects.bulk_update(to_update, ["ra", "dec", "metadata", "truth", "healpix", "mag"],
                                   batch_size=UPDATE_BATCH)
        n_updated = len(to_update)
    # New rows keep their positions: insert runs of consecutive image indices.
    run: list = []
    for index, row in to_create:
        if run and index != run[0][0] + len(run):
            insert_galaxies(survey, [r for _, r in run], first_index=run[0][0])
            run = []
        run.append((index, row))
    if run:
        insert_galaxies(survey, [r for _, r in run], first_index=run[0][0])
    return {"created": len(to_create), "updated": n_updated, "deleted": len(gone),
            "unchanged": len(rows) - len(to_create) - n_updated}


def _id_hash(source_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(source_id.encode(), digest_size=8).digest(), "little", signed=True)


def _clean_spec(spec: dict) -> dict:
    spec = dict(spec)
    unknown = set(spec) - set(SPEC_FIELDS) - {"name", "slug"}
    if unknown:
        raise PublishError(f"unknown survey spec keys {sorted(unknown)}; known: name, slug, {', '.join(SPEC_FIELDS)}")
    name = str(spec.get("name") or "").strip()
    if not name or len(name) > 100:
        raise PublishError("a survey needs a name of 1 to 100 characters")
    spec["name"] = name
    if spec.get("slug") and slugify(spec["slug"]) != spec["slug"]:
        raise PublishError(f"slug {spec['slug']!r} is not a valid slug (try {slugify(spec['slug'])!r})")
    bands = [str(b) for b in spec.get("bands") or []]
    if not bands or len(set(bands)) != len(bands):
        raise PublishError(f"bands {bands} must be a non-empty list of distinct names")
    spec["bands"] = bands
    kind = spec.setdefault("image_kind", Survey.ImageKind.FLUX)
    if kind not in Survey.ImageKind.values:
        raise PublishError(f"image_kind {kind!r} is not one of {Survey.ImageKind.values}")
    for key in ("zero_points", "depth"):
        spec[key] = _json_value(spec.get(key) or {}, f"spec[{key!r}]")
    return spec


def _clean_row(row: GalaxyRow) -> GalaxyRow:
    sid = str(row.source_id).strip()
    if not sid or len(sid) > 64:
        raise PublishError(f"source_id {row.source_id!r} must be 1 to 64 characters")
    ra, dec = _coordinate(row.ra, 0.0, 360.0, "ra", sid), _coordinate(row.dec, -90.0, 90.0, "dec", sid)
    return GalaxyRow(sid, ra, dec, _json_value(row.metadata or {}, f"{sid} metadata"),
                     _json_value(row.truth or {}, f"{sid} truth"))


def _coordinate(value, lo: float, hi: float, name: str, sid: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise PublishError(f"{sid}: {name}={value} is outside [{lo}, {hi}] degrees")
    return value


def _json_value(value, what: str):
    """A JSON round trip: the exact value the database will return (tuples -> lists, no NaN)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_numpy_scalar))
    except (TypeError, ValueError) as exc:
        raise PublishError(f"{what} is not JSON-serialisable without NaN/inf: {exc}") from None


def _numpy_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _free_slug(spec: dict) -> str:
    base = spec.get("slug") or slugify(spec["name"])[:90] or "survey"
    if not Survey.objects.filter(slug=base).exists():
        return base
    if spec.get("slug"):
        raise PublishError(f"slug {base!r} already belongs to another survey")
    n = 2
    while Survey.objects.filter(slug=f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def _remove(path: Path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:  # a leftover file is harmless; the database no longer points at it
        log.warning("could not remove %s", path, exc_info=True)
