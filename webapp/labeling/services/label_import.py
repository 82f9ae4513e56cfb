"""Import expert labels into a task from a CSV, FITS or VOTable catalogue.

Each row names a galaxy, by ``id`` (the survey's ``source_id``; also ``source_id`` or ``objid``)
or by ``ra``/``dec`` in degrees matched within ``radius`` arcseconds (default 1.0) among the
task's surveys, and gives the answer: ``class`` (a class name or index; also ``label``) for a
classification task, ``value`` (or the task's target name) for a regression task.

Rows that match no galaxy, match more than one (an id in two surveys, two galaxies inside
the radius), repeat a galaxy already matched earlier in the file, or carry a bad answer are
reported per row (1-based data row number and reason) and skipped; the others are stored.

Attribution: imported labels belong to one system user per source (``source:<slug>``, inactive,
no password, no role), with ``Label.source`` set to the source's name.  So a source is one
voter like any person: its labels never overwrite a curator's own answer on the same galaxy,
two sources never overwrite each other, consensus and agreement count it once, exports name
it, and rounds train on its labels like any other.  Re-running with the same source skips
galaxies that already carry a label from it, so nothing is duplicated.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.labeling.services.labels import refresh_queue_items

FORMATS = {"csv": "ascii.csv", "fits": "fits", "fit": "fits", "fits.gz": "fits", "vot": "votable",
           "votable": "votable", "xml": "votable"}
ID_COLUMNS = ("id", "source_id", "objid")
CLASS_COLUMNS = ("class", "label", "class_index")
DEFAULT_RADIUS_ARCSEC = 1.0
MAX_RADIUS_ARCSEC = 60.0
MAX_ROWS = 200_000
MAX_SOURCE = 80


class ImportProblem(ValueError):
    """The file as a whole cannot be imported (unreadable, no usable columns, bad options)."""


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    imported: int = 0
    already: int = 0  # rows whose galaxy already had a label from this source (a re-run)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        return (f"{self.rows} rows: {self.imported} labels imported from {self.source!r}, "
                f"{self.already} already imported, {self.skipped} skipped")


def table_format(filename: str, fmt: str | None = None) -> str:
    """The astropy format for an explicit ``fmt`` or the file's extension."""
    key = (fmt or "").lower().lstrip(".")
    if not key:
        name = filename.lower()
        key = "fits.gz" if name.endswith(".fits.gz") else name.rsplit(".", 1)[-1] if "." in name else ""
    if key not in FORMATS:
        raise ImportProblem(f"unknown table format {key or filename!r}: use CSV, FITS or VOTable "
                            "(.csv, .fits, .vot/.xml)")
    return FORMATS[key]


def read_table(data: bytes, filename: str, fmt: str | None = None):
    """An astropy Table from uploaded bytes; ImportProblem with a readable reason otherwise."""
    from astropy.table import Table
    astropy_format = table_format(filename, fmt)
    try:
        if astropy_format == "ascii.csv":
            table = Table.read(data.decode("utf-8-sig").splitlines(), format="ascii.csv")
        else:
            table = Table.read(io.BytesIO(data), format=astropy_format)
    except Exception as exc:  # astropy raises many kinds on hostile files
        raise ImportProblem(f"cannot read {filename!r} as {astropy_format}: {str(exc)[:200]}") from None
    if len(table) > MAX_ROWS:
        raise ImportProblem(f"{len(table):,} rows; at most {MAX_ROWS:,} per import")
    return table


def _column(table, names) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    return next((lower[n] for n in names if n in lower), None)


def _cell(table, column, i):
    value = table[column][i]
    if np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    return value.strip() if isinstance(value, str) else value


def source_user(source: str):
    """The system user that holds one source's labels (created inactive, without a password)."""
    slug = slugify(source)[:60] or "source"
    user, created = get_user_model().objects.get_or_create(
        username=f"source:{slug}", defaults={"is_active": False, "first_name": source[:150]})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _answer(task: Task, raw) -> tuple[int | None, float | None]:
    """(class_index, value) from a cell; ValueError with the reason."""
    if raw is None or raw == "":
        raise ValueError("no class" if task.is_classification else "no value")
    if task.is_classification:
        names = [n.lower() for n in task.class_names]
        if isinstance(raw, str) and raw.lower() in names:
            return names.index(raw.lower()), None
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"class {raw!r} is not one of {', '.join(task.class_names)}") from None
        if not number.is_integer() or not 0 <= number < len(names):
            raise ValueError(f"class index {raw} is out of range 0–{len(names) - 1}")
        return int(number), None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"value {raw!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError("value is not finite")
    if task.value_min is not None and number < task.value_min or task.value_max is not None and number > task.value_max:
        raise ValueError(f"value {number:g} is outside {task.value_min}–{task.value_max}")
    return None, number


def _match_ids(task: Task, ids: list) -> dict[str, list[int]]:
    """{source_id: [galaxy pks in the task's surveys]}."""
    wanted = sorted({str(x) for x in ids if x not in (None, "")})
    found: dict[str, list[int]] = {}
    surveys = list(task.surveys.values_list("pk", flat=True))
    for start in range(0, len(wanted), 5000):
        for pk, sid in Galaxy.objects.filter(survey_id__in=surveys, source_id__in=wanted[start:start + 5000]) \
                .values_list("pk", "source_id"):
            found.setdefault(sid, []).append(pk)
    return found


def _match_sky(task: Task, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float) -> list[list[int]]:
    """For each (ra, dec): the galaxy pks of the task's surveys within the radius."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    ok = np.isfinite(ra) & np.isfinite(dec)
    out: list[list[int]] = [[] for _ in ra]
    if not ok.any():
        return out
    pad = radius_arcsec / 3600.0
    rows = list(Galaxy.objects.filter(survey__in=task.surveys.all(), dec__gte=float(dec[ok].min()) - pad,
                                      dec__lte=float(dec[ok].max()) + pad).values_list("pk", "ra", "dec"))
    if not rows:
        return out
    pks = np.array([r[0] for r in rows], dtype=np.int64)
    catalogue = SkyCoord(np.array([r[1] for r in rows]) * u.deg, np.array([r[2] for r in rows]) * u.deg)
    where = np.flatnonzero(ok)
    wanted = SkyCoord(ra[where] * u.deg, dec[where] * u.deg)
    i_want, i_cat, _, _ = catalogue.search_around_sky(wanted, radius_arcsec * u.arcsec)
    for a, b in zip(i_want, i_cat):
        out[int(where[a])].append(int(pks[b]))
    return out


def import_labels(task: Task, table, source: str, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC) -> ImportReport:
    """Store the table's labels in ``task`` as ``source``; see the module docstring."""
    source = " ".join(str(source or "").split())
    if not source:
        raise ImportProblem("name the source of these labels (e.g. 'GZ2 expert')")
    if len(source) > MAX_SOURCE:
        raise ImportProblem(f"the source name must have at most {MAX_SOURCE} characters")
    if not 0 < radius_arcsec <= MAX_RADIUS_ARCSEC:
        raise ImportProblem(f"the match radius must be more than 0 and at most {MAX_RADIUS_ARCSEC:g} arcsec")
    id_col = _column(table, ID_COLUMNS)
    ra_col, dec_col = _column(table, ("ra",)), _column(table, ("dec",))
    if id_col is None and (ra_col is None or dec_col is None):
        raise ImportProblem(f"the table needs an id column ({', '.join(ID_COLUMNS)}) or ra and dec columns; "
                            f"it has {', '.join(table.colnames) or 'none'}")
    answer_names = CLASS_COLUMNS if task.is_classification else tuple(
        n for n in ("value", (task.target_name or "").lower()) if n)
    answer_col = _column(table, answer_names)
    if answer_col is None:
        raise ImportProblem(f"the table needs a {' or '.join(answer_names)} column for this "
                            f"{task.kind} task; it has {', '.join(table.colnames) or 'none'}")
    report = ImportReport(source=source, rows=len(table))
    n = len(table)
    if id_col is not None:
        ids = [_cell(table, id_col, i) for i in range(n)]
        by_id = _match_ids(task, ids)
        candidates = [by_id.get(str(x), []) if x not in (None, "") else None for x in ids]
        how = "id"
    else:
        ra = np.array([_as_float(_cell(table, ra_col, i)) for i in range(n)], dtype=np.float64)
        dec = np.array([_as_float(_cell(table, dec_col, i)) for i in range(n)], dtype=np.float64)
        candidates = _match_sky(task, ra, dec, radius_arcsec)
        candidates = [c if np.isfinite(ra[i]) and np.isfinite(dec[i]) and -90 <= dec[i] <= 90 else None
                      for i, c in enumerate(candidates)]
        how = f"RA/Dec within {radius_arcsec:g} arcsec"
    user = source_user(source)
    done = set(Label.objects.filter(task=task, user=user, source=source, kind=Label.Kind.VALUE)
               .values_list("galaxy_id", flat=True))
    matched_by: dict[int, int] = {}
    new: list[Label] = []
    for i in range(n):
        row = i + 1
        found = candidates[i]
        if found is None:
            report.problems.append((row, "no id" if how == "id" else "no valid ra/dec"))
            continue
        if not found:
            report.problems.append((row, f"no galaxy of this task matches by {how}"))
            continue
        if len(found) > 1:
            report.problems.append((row, f"ambiguous: {len(found)} galaxies match by {how}"))
            continue
        galaxy_id = found[0]
        if galaxy_id in matched_by:
            report.problems.append((row, f"galaxy {galaxy_id} was already matched by row {matched_by[galaxy_id]}"))
            continue
        matched_by[galaxy_id] = row
        try:
            class_index, value = _answer(task, _cell(table, answer_col, i))
        except ValueError as exc:
            report.problems.append((row, str(exc)))
            continue
        if galaxy_id in done:
            report.already += 1
            continue
        new.append(Label(task=task, galaxy_id=galaxy_id, user=user, kind=Label.Kind.VALUE,
                         class_index=class_index, value=value, source=source))
    with transaction.atomic():
        Label.objects.bulk_create(new, batch_size=2000)
    # Imported answers count as votes: queued galaxies they answer are done like any other.
    queued = QueueItem.objects.filter(task=task, done=False, galaxy_id__in=[label.galaxy_id for label in new])
    refresh_queue_items(task, queued.values_list("galaxy_id", flat=True))
    report.imported = len(new)
    return report


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
