"""Bulk-insert Galaxy rows in batches: the one home for writing many galaxies.

    with transaction.atomic():
        n = insert_galaxies(survey, rows, first_index=0, batch_size=20_000, progress=cb)

``rows`` is any iterable of objects with ``source_id``, ``ra``, ``dec``, ``metadata`` and
``truth`` (services.surveys.GalaxyRow), already validated; the i-th row gets
``image_index = first_index + i``.  The iterable is consumed one batch at a time, so memory
is bounded by ``batch_size`` whatever the number of rows.  ``healpix`` and ``mag`` are
computed here (services.sky), so every writer fills them the same way.

On PostgreSQL each batch goes through ``COPY ... FROM STDIN`` (psycopg's ``cursor.copy`` with
its queued writer, the next batch prepared while the server takes this one); elsewhere through
``bulk_create``.  The helper opens no transaction of its own: call it
inside ``transaction.atomic()`` and the caller's publish stays all or nothing.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from itertools import islice
from typing import Iterable, Iterator

from django.db import connection
from psycopg.copy import QueuedLibpqWriter

from ml.progress import Progress
from webapp.catalog.models import Galaxy
from webapp.catalog.services.sky import healpix_index, promoted_mag

BATCH_SIZE = 20_000
_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
COPY_COLUMNS = ("survey_id", "source_id", "ra", "dec", "image_index", "metadata", "truth", "healpix", "mag")


def sky_columns(rows) -> tuple[list, list]:
    """(healpix, mag) lists for ``rows`` (None where there is no position / magnitude)."""
    cells = healpix_index([r.ra for r in rows], [r.dec for r in rows]) if rows else []
    return ([int(c) if c >= 0 else None for c in cells], [promoted_mag(r.metadata) for r in rows])


def insert_galaxies(survey, rows: Iterable, *, first_index: int = 0, batch_size: int = BATCH_SIZE,
                    progress: Progress | None = None, total: int = 0) -> int:
    """Insert ``rows`` as new Galaxy rows of ``survey`` in batches; returns how many were written.

    ``total`` (optional) is only for progress messages.  Raises the database's IntegrityError
    on a duplicate source_id or image_index; the caller's transaction then rolls back.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    use_copy = connection.vendor == "postgresql"
    batches, written = _prepared_batches(rows, batch_size), 0
    current = next(batches, None)
    while current is not None:
        batch, cells, mags = current
        start = first_index + written
        if use_copy:
            with _galaxy_copy() as copy:
                for i, r in enumerate(batch):
                    copy.write_row((survey.pk, r.source_id, r.ra, r.dec, start + i,
                                    _dumps(r.metadata) if r.metadata else "{}",
                                    _dumps(r.truth) if r.truth else "{}", cells[i], mags[i]))
                # Read and prepare the next batch while the server works through this one (the
                # queued writer sends from a thread): with a COPY per batch and nothing overlapped,
                # the server idled while Python prepared a batch and Python idled while the server
                # caught up; at 10^6 rows the import waited 14 s of its 27 on the server.
                current = next(batches, None)
        else:
            Galaxy.objects.bulk_create([
                Galaxy(survey_id=survey.pk, source_id=r.source_id, ra=r.ra, dec=r.dec,
                       image_index=start + i, metadata=r.metadata or {},
                       truth=r.truth or {}, healpix=cells[i], mag=mags[i])
                for i, r in enumerate(batch)], batch_size=min(batch_size, 2000))
            current = next(batches, None)
        written += len(batch)
        if progress:     # between COPY statements: the connection is free for the job's progress row
            progress(written, max(total, written), f"saved {written:,} galaxies")
    return written


def _prepared_batches(rows: Iterable, batch_size: int) -> Iterator[tuple[list, list, list]]:
    """(rows, healpix cells, magnitudes) of consecutive batches of ``rows``."""
    iterator = iter(rows)
    while batch := list(islice(iterator, batch_size)):
        cells, mags = sky_columns(batch)
        yield batch, cells, mags


@contextmanager
def _galaxy_copy():
    """A ``COPY galaxy FROM STDIN`` whose rows psycopg's queued writer sends from a thread, so
    that this thread can go on preparing rows while the server parses and indexes them."""
    table = connection.ops.quote_name(Galaxy._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(Galaxy._meta.get_field(
        c.removesuffix("_id") if c == "survey_id" else c).column) for c in COPY_COLUMNS)
    connection.ensure_connection()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN", writer=QueuedLibpqWriter(raw)) as copy:
            yield copy


def fill_sky_columns(model=Galaxy, batch_size: int = 5000, only_missing: bool = True,
                     survey_id: int | None = None, progress: Progress | None = None) -> int:
    """Compute ``healpix`` and ``mag`` for existing rows, ``batch_size`` rows per transaction.

    Walks the table by primary key (keyset, so each batch costs the same), which makes it safe
    to stop and re-run: with ``only_missing`` a re-run skips rows already filled.  ``model``
    lets a data migration pass its historical Galaxy model.  Returns rows updated.
    """
    from django.db import transaction
    from django.db.models import Q

    qs = model.objects.all()
    if survey_id is not None:
        qs = qs.filter(survey_id=survey_id)
    if only_missing:   # a position without its cell, or a row never looked at for a magnitude
        qs = qs.filter(Q(healpix__isnull=True, ra__isnull=False, dec__isnull=False) | Q(mag__isnull=True))
    total = qs.count() if progress else 0
    last, done = 0, 0
    while True:
        batch = list(qs.filter(pk__gt=last).order_by("pk").only("id", "ra", "dec", "metadata", "healpix", "mag")
                     [:batch_size])
        if not batch:
            break
        cells, mags = sky_columns(batch)
        changed = []
        for g, cell, mag in zip(batch, cells, mags):
            if (g.healpix, g.mag) != (cell, mag):
                g.healpix, g.mag = cell, mag
                changed.append(g)
        with transaction.atomic():
            model.objects.bulk_update(changed, ["healpix", "mag"], batch_size=1000)
        last, done = batch[-1].pk, done + len(changed)
        if progress:
            progress(min(done, total), max(total, done), f"filled {done:,} galaxies")
    return done


def refresh_planner_statistics() -> None:
    """ANALYZE the galaxy table on PostgreSQL after a bulk write, so the planner (and the grid's
    estimated counts, services.paging) see the new rows at once instead of after autovacuum
    gets round to it.  Call it after the writing transaction commits; ANALYZE samples a fixed
    number of rows (about a second at 10^7).  A no-op elsewhere."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(Galaxy._meta.db_table)}")
