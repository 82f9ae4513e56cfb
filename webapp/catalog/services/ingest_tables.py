"""Catalogue tables for ingestion: CSV/TSV or FITS tables -> typed rows with clear errors.

Every problem names the file and, for a row, its line (CSV) or row number (FITS),
e.g. ``cat.csv line 7: column 'ra' has 'abc', not a number``.  A whole-file
problem (unreadable, no id column) raises TableError; row problems are returned
so the good rows still go in.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from webapp.catalog.services.ingest_pixels import IngestError

# Auto-detected column names, case-insensitive, first match wins.
ID_CANDIDATES = ("source_id", "objid", "obj_id", "dr7objid", "id", "galaxyid", "iauname", "name")
RA_CANDIDATES = ("ra", "ra_deg", "raj2000", "alpha_j2000")
DEC_CANDIDATES = ("dec", "dec_deg", "dej2000", "decj2000", "delta_j2000")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
_INT = re.compile(r"^[+-]?\d+$")


class TableError(IngestError):
    """A whole catalogue file cannot be used (the message names the file)."""


@dataclass
class Table:
    name: str                          # file name, for messages
    columns: list[str]
    rows: list[dict]                   # column -> str | int | float | None
    where: list[str]                   # "cat.csv line 7" per row
    raw_ids: dict = field(default_factory=dict)  # column -> list of raw id strings (CSV text as written)


@dataclass
class LabelSpec:
    """An integer class column turned into metadata "<key>_class" and "<key>_label"."""
    column: str                         # e.g. "CLASS"
    key: str                            # e.g. "gz1" -> metadata gz1_class, gz1_label
    names: dict[int, str] = field(default_factory=dict)  # class -> name; empty: any integer allowed


@dataclass
class CatalogRow:
    source_id: str
    where: str                          # file and line, for messages
    ra: float | None                    # degrees
    dec: float | None                   # degrees
    metadata: dict
    image_key: str = ""                 # what names this row's image; defaults to source_id


def read_table(path: Path) -> tuple[Table, list[str]]:
    """Read a CSV/TSV or FITS table; returns (table, row errors)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path.name}: catalogue file not found")
    if path.name.lower().endswith(FITS_SUFFIXES):
        return _read_fits_table(path), []
    return _read_csv(path)


def _read_csv(path: Path) -> tuple[Table, list[str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            head = fh.readline()
            fh.seek(0)
            delimiter = "\t" if ("\t" in head and "," not in head) or path.suffix.lower() == ".tsv" else ","
            lines = list(csv.reader(fh, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{path.name}: not a readable CSV text file ({exc})") from None
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise TableError(f"{path.name}: empty file (no header line)")
    header = [c.strip() for c in lines[0]]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise TableError(f"{path.name}: duplicate column names {dupes}")
    rows, where, raw, errors = [], [], [], []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            errors.append(f"{path.name} line {number}: {len(cells)} fields but the header has {len(header)}")
            continue
        raw.append(cells)
        rows.append({col: coerce_cell(val) for col, val in zip(header, cells)})
        where.append(f"{path.name} line {number}")
    raw_ids = {col: [cells[i].strip() for cells in raw] for i, col in enumerate(header)}
    return Table(path.name, header, rows, where, raw_ids), errors


def _read_fits_table(path: Path) -> Table:
    from astropy.table import Table as AstropyTable

    try:
        table = AstropyTable.read(path, format="fits")
    except Exception as exc:  # astropy raises many types for a broken file
        raise TableError(f"{path.name}: not a readable FITS table ({exc.__class__.__name__}: {exc})") from None
    columns = [c for c in table.colnames if table[c].ndim == 1]
    rows = []
    for row in table:
        rows.append({c: python_value(row[c]) for c in columns})
    where = [f"{path.name} row {i + 1}" for i in range(len(rows))]
    return Table(path.name, columns, rows, where)


def coerce_cell(text: str):
    """CSV text -> int, float or str; empty and NaN/inf -> None (JSON has no NaN)."""
    text = text.strip()
    if text == "":
        return None
    if _INT.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else None


def python_value(value):
    """A table cell or HDF5 column entry as a JSON-ready Python value: numpy scalars become int,
    float, bool or str, bytes are decoded, text is stripped, masked and NaN/inf become None."""
    if np.ma.is_masked(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.strip()
    return value


def find_column(table: Table, explicit: str | None, candidates: tuple[str, ...], role: str,
                required: bool) -> str | None:
    """The column to use for ``role``: the explicit name, else the first auto-detected candidate."""
    lower = {c.lower(): c for c in table.columns}
    if explicit:
        if explicit in table.columns:
            return explicit
        if explicit.lower() in lower:
            return lower[explicit.lower()]
        raise TableError(f"{table.name}: no {role} column {explicit!r} (columns: {_list(table.columns)})")
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        raise TableError(f"{table.name}: no {role} column found; looked for {', '.join(candidates)} "
                         f"(columns: {_list(table.columns)}); name it explicitly")
    return None


def catalog_rows(table: Table, id_column: str | None = None, ra_column: str | None = None,
                 dec_column: str | None = None, label: LabelSpec | None = None,
                 transform: Callable[[dict], dict] | None = None,
                 image_column: str | None = None) -> tuple[list[CatalogRow], list[str]]:
    """Turn table rows into CatalogRows; the other columns become metadata.

    ``transform(metadata) -> metadata`` reshapes metadata (e.g. Galaxy Zoo votes).
    Rows with a missing id, a non-numeric or out-of-range coordinate, or a bad
    label are returned as errors instead.
    """
    id_col = find_column(table, id_column, ID_CANDIDATES, "id", required=True)
    ra_col = find_column(table, ra_column, RA_CANDIDATES, "RA", required=False)
    dec_col = find_column(table, dec_column, DEC_CANDIDATES, "Dec", required=False)
    if (ra_col is None) != (dec_col is None):
        raise TableError(f"{table.name}: found only one of RA/Dec ({ra_col or dec_col}); give both columns")
    label_col = find_column(table, label.column, (), "label", required=True) if label else None
    img_col = find_column(table, image_column, (), "image", required=True) if image_column else None
    skip = {id_col, ra_col, dec_col, label_col}
    raw_ids = table.raw_ids.get(id_col)
    rows, errors = [], []
    for i, (record, where) in enumerate(zip(table.rows, table.where)):
        source_id = raw_ids[i] if raw_ids is not None else _text(record.get(id_col))
        try:
            if not source_id:
                raise IngestError(f"empty id in column {id_col!r}")
            ra = _number(record, ra_col, 0.0, 360.0) if ra_col else None
            dec = _number(record, dec_col, -90.0, 90.0) if dec_col else None
            metadata = {k: v for k, v in record.items() if k not in skip}
            if label:
                metadata.update(_label(record, label_col, label))
            if transform:
                metadata = transform(metadata)
        except IngestError as exc:
            errors.append(f"{where}: {exc}")
            continue
        key = _text(record.get(img_col)) if img_col else source_id
        rows.append(CatalogRow(source_id, where, ra, dec, metadata, key or source_id))
    return rows, errors


def _number(record: dict, column: str, lo: float, hi: float) -> float | None:
    value = record.get(column)
    if value is None:
        return None
    if isinstance(value, str) or isinstance(value, bool):
        raise IngestError(f"column {column!r} has {value!r}, not a number")
    value = float(value)
    if not lo <= value <= hi:
        raise IngestError(f"column {column!r} has {value}, outside [{lo:g}, {hi:g}] degrees")
    return value


def _label(record: dict, column: str, spec: LabelSpec) -> dict:
    value = record.get(column)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise IngestError(f"column {column!r} has {value!r}, not an integer class")
    if spec.names and value not in spec.names:
        raise IngestError(f"column {column!r} has class {value}, not one of {sorted(spec.names)}")
    out = {f"{spec.key}_class": value}
    if spec.names:
        out[f"{spec.key}_label"] = spec.names[value]
    return out


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _list(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")
