"""Embedding tables made anywhere: read, validate and write them in bounded memory.

A table holds one row per object: an id, RA/Dec (degrees, ICRS), an embedding vector and
any catalogue columns (magnitudes, redshifts, morphology fractions...).  Two inputs:

- **Parquet** with columns ``id``, ``ra``, ``dec``, ``embedding`` (``fixed_size_list<float>``
  or ``list<float>``) plus catalogue columns.  Read record batch by record batch with pyarrow,
  never the whole table.
- **.npy + CSV**: an N×D ``.npy`` (memory-mapped) and a CSV beside it (same stem, or given)
  with ``id, ra, dec, ...`` in the same row order, read in blocks by pyarrow.csv.

Column names come from a :class:`Layout`; presets match the public tables:

========== ===================================================== ===========================================
preset      table (Hugging Face dataset, Parquet)                  columns read
========== ===================================================== ===========================================
latentsky   this app's export (``export_embeddings``)              id, ra, dec, embedding
astropt     ``Smith42/galaxies_embeddings`` (AstroPT, Smith et al.  dr8_id, ra, dec, ``095M`` (AstroPT-95M;
            2024) joined row-wise to ``Smith42/galaxies_metadata``  ``015M`` and ``850M`` via --embedding-column);
            (dr8_id, ra, dec, Galaxy Zoo DECaLS fractions)          the embeddings file alone carries only the
                                                                    vectors, so join the metadata first
aion_ls     ``astronolan/legacysurveys-dr10-embeddings`` (AION-1     object_id (bytes, e.g. b'0421p022-7410'),
            on Legacy Survey DR10; also ``...-dr10-20-embeddings``) ra, dec, aion_mean_embedding (768);
                                                                    EBV, FLUX_G..W4, SHAPE_* are kept
aion_search the same table, AION-Search text-aligned vectors        object_id, ra, dec, aion_search_embedding
                                                                    (1024)
========== ===================================================== ===========================================

Other list columns (e.g. the second embedding column of the AION tables) are not catalogue
columns: they are skipped and named in ``TableInfo.skipped_columns``.

Validation is per row: wrong vector length, NaN/inf in the vector, missing or out-of-range
RA/Dec, a missing id, a duplicate id (the first row of an id is kept).  Each problem is a
:class:`RowError` (row number, id, reason); good rows are kept.  A problem with the whole file
(not Parquet, empty, a column missing or of the wrong type) raises :class:`TableError`.

Duplicates are found in bounded memory: pass 1 keeps one int64 hash per good row (8 bytes a
row, not the ids themselves), sorts them, and re-reads only the ids of rows whose hashes
collide to compare them exactly.  Pure Python + numpy + pyarrow: no Django here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml.atomic import atomic_path
from ml.progress import Progress

BATCH_ROWS = 65_536       # rows per record batch read (at D=128 float32: 32 MB of vectors)
MAX_ERRORS_KEPT = 10_000  # RowErrors kept in memory; the rest are only counted


class TableError(ValueError):
    """The file as a whole cannot be read as an embedding table (nothing was imported)."""


@dataclass(frozen=True)
class Layout:
    """Which column holds what.  Everything else is a catalogue column."""
    id: str = "id"                # object id (int or string), unique in the table
    ra: str = "ra"                # degrees, ICRS, in [0, 360)
    dec: str = "dec"              # degrees, ICRS, in [-90, 90]
    embedding: str = "embedding"  # fixed_size_list<float> or list<float> (Parquet) / the .npy rows

    def with_overrides(self, **names: str | None) -> "Layout":
        return replace(self, **{k: v for k, v in names.items() if v})


LAYOUTS: dict[str, Layout] = {
    "latentsky": Layout(),
    "astropt": Layout(id="dr8_id", embedding="095M"),
    "aion_ls": Layout(id="object_id", embedding="aion_mean_embedding"),
    "aion_search": Layout(id="object_id", embedding="aion_search_embedding"),
}


def get_layout(name: str, **overrides: str | None) -> Layout:
    try:
        return LAYOUTS[name or "latentsky"].with_overrides(**overrides)
    except KeyError:
        raise TableError(f"unknown layout {name!r}; layouts: {', '.join(LAYOUTS)}") from None


@dataclass
class RowError:
    row: int       # 0-based row number in the file
    id: str        # the row's id as text ("" when missing)
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} (id {self.id or '?'}): {self.reason}"


@dataclass
class TableInfo:
    path: str
    kind: str                       # "parquet" or "npy+csv"
    n_rows: int
    dim: int
    layout: dict
    catalog_columns: list[str]
    skipped_columns: list[str] = field(default_factory=list)
    file_metadata: dict = field(default_factory=dict)   # the "latentsky" key of a Parquet's schema metadata


@dataclass
class Block:
    """Consecutive rows of the table: ``rows[0]`` is the file row of the first."""
    start: int
    ids: list                       # str ids, None where missing
    ra: np.ndarray                  # (n,) float64, NaN where missing
    dec: np.ndarray                 # (n,) float64
    vectors: np.ndarray             # (n, D) float32; rows with a wrong length are NaN
    bad_length: np.ndarray          # (n,) bool: vector missing or of the wrong length
    columns: dict[str, list]        # catalogue column -> JSON-safe values

    def __len__(self) -> int:
        return len(self.ids)


# ----------------------------------------------------------------- reading

def _json_safe(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.generic,)):
        return _json_safe(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _id_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return text or None


def _is_scalar(dtype: pa.DataType) -> bool:
    return not pa.types.is_nested(dtype)


def _float_column(array: pa.Array, name: str) -> np.ndarray:
    try:
        return array.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TableError(f"column {name!r} of type {array.type} is not numeric (degrees expected)") from exc


def _vectors(array: pa.Array, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 and a bad-length mask from a (fixed size) list column."""
    n = len(array)
    out = np.full((n, dim), np.nan, dtype=np.float32)
    if pa.types.is_fixed_size_list(array.type):
        values = array.flatten() if array.null_count == 0 else None
        if values is not None and array.type.list_size == dim:
            try:
                out[:] = values.cast(pa.float32()).to_numpy(zero_copy_only=False).reshape(n, dim)
                return out, np.zeros(n, dtype=bool)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TableError(f"column {name!r} holds {array.type.value_type}, not floats") from exc
        if array.type.list_size != dim:
            return out, np.ones(n, dtype=bool)
        array = array.cast(pa.list_(array.type.value_type))
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise TableError(f"column {name!r} is {array.type}, not a list of floats")
    value_type = array.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise TableError(f"column {name!r} holds {value_type}, not floats")
    lengths = array.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False)
    good = lengths == dim
    offsets = array.offsets.to_numpy()[:-1]          # into array.values (slicing included)
    flat = array.values.cast(pa.float32()).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(good)
    if len(rows):
        index = offsets[rows][:, None] + np.arange(dim)[None, :]
        out[rows] = flat[index]
    return out, ~good


def _block_from_table(batch: pa.RecordBatch, start: int, layout: Layout, dim: int,
                      catalog: list[str], vectors: np.ndarray | None = None) -> Block:
    names = batch.schema.names
    ids = [_id_text(v) for v in batch.column(names.index(layout.id)).to_pylist()]
    ra = _float_column(batch.column(names.index(layout.ra)), layout.ra)
    dec = _float_column(batch.column(names.index(layout.dec)), layout.dec)
    if vectors is None:
        vecs, bad = _vectors(batch.column(names.index(layout.embedding)), dim, layout.embedding)
    else:
        vecs, bad = np.asarray(vectors, dtype=np.float32), np.zeros(len(vectors), dtype=bool)
    columns = {c: [_json_safe(v) for v in batch.column(names.index(c)).to_pylist()] for c in catalog}
    return Block(start, ids, ra, dec, vecs, bad, columns)


class EmbeddingTable:
    """An embedding table on disk.  ``blocks()`` streams it; nothing holds the whole table."""

    def __init__(self, path: str | Path, layout: Layout = Layout(), catalog_path: str | Path | None = None,
                 batch_rows: int = BATCH_ROWS):
        self.path = Path(path)
        self.layout = layout
        self.batch_rows = int(batch_rows)
        if not self.path.is_file():
            raise TableError(f"{self.path}: no such file")
        if self.path.suffix.lower() == ".npy":
            self._open_npy(catalog_path)
        else:
            self._open_parquet()
        if self.info.n_rows == 0:
            raise TableError(f"{self.path.name}: the table has no rows")

    # -- Parquet
    def _open_parquet(self) -> None:
        try:
            # pre_buffer=False: with it, pyarrow keeps every row group read so far (RSS grows with N)
            self._pq = pq.ParquetFile(self.path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise TableError(f"{self.path.name}: not a readable Parquet file ({exc})") from exc
        schema = self._pq.schema_arrow
        layout = self.layout
        missing = [c for c in (layout.id, layout.ra, layout.dec, layout.embedding) if c not in schema.names]
        if missing:
            raise TableError(f"{self.path.name}: missing column(s) {missing}; columns are {schema.names} "
                             f"(choose a --layout or name the columns)")
        etype = schema.field(layout.embedding).type
        if not (pa.types.is_fixed_size_list(etype) or pa.types.is_list(etype) or pa.types.is_large_list(etype)):
            raise TableError(f"{self.path.name}: column {layout.embedding!r} is {etype}, not a list of floats")
        if not (pa.types.is_floating(etype.value_type) or pa.types.is_integer(etype.value_type)):
            raise TableError(f"{self.path.name}: column {layout.embedding!r} holds {etype.value_type}, not floats")
        for name in (layout.ra, layout.dec):
            t = schema.field(name).type
            if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
                raise TableError(f"{self.path.name}: column {name!r} is {t}, not numeric degrees")
        n_rows = self._pq.metadata.num_rows
        dim = etype.list_size if pa.types.is_fixed_size_list(etype) else self._first_length()
        used = {layout.id, layout.ra, layout.dec, layout.embedding}
        catalog = [n for n in schema.names if n not in used and _is_scalar(schema.field(n).type)]
        skipped = [n for n in schema.names if n not in used and n not in catalog]
        meta = {}
        raw = (schema.metadata or {}).get(b"latentsky")
        if raw:
            try:
                meta = json.loads(raw)
            except ValueError:
                meta = {}
        self.info = TableInfo(str(self.path), "parquet", n_rows, int(dim or 0), asdict(layout), catalog, skipped, meta)
        if n_rows and not dim:
            raise TableError(f"{self.path.name}: no row has an embedding; cannot tell its length")

    def _first_length(self) -> int:
        """Vector length of a list<float> column: the most common length in the first batch."""
        for batch in self._pq.iter_batches(batch_size=self.batch_rows, columns=[self.layout.embedding]):
            lengths = batch.column(0).value_lengths().drop_null().to_numpy(zero_copy_only=False)
            lengths = lengths[lengths > 0]
            if len(lengths):
                values, counts = np.unique(lengths, return_counts=True)
                return int(values[np.argmax(counts)])
        return 0

    # -- .npy + CSV
    def _open_npy(self, catalog_path) -> None:
        try:
            self._npy = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise TableError(f"{self.path.name}: not a readable .npy array ({exc})") from exc
        if self._npy.ndim != 2 or not np.issubdtype(self._npy.dtype, np.number):
            raise TableError(f"{self.path.name}: expected an N×D numeric array, got {self._npy.dtype} "
                             f"{self._npy.shape}")
        self._csv = Path(catalog_path) if catalog_path else self.path.with_suffix(".csv")
        if not self._csv.is_file():
            raise TableError(f"{self.path.name}: the catalogue {self._csv.name} (id, ra, dec, ...) is missing")
        names = self._csv_reader().schema.names
        layout = self.layout
        missing = [c for c in (layout.id, layout.ra, layout.dec) if c not in names]
        if missing:
            raise TableError(f"{self._csv.name}: missing column(s) {missing}; columns are {names}")
        n_csv = sum(b.num_rows for b in self._csv_reader(columns=[layout.id]))
        if n_csv != len(self._npy):
            raise TableError(f"{self._csv.name} has {n_csv} rows but {self.path.name} has {len(self._npy)} vectors")
        catalog = [n for n in names if n not in (layout.id, layout.ra, layout.dec)]
        self.info = TableInfo(str(self.path), "npy+csv", int(len(self._npy)), int(self._npy.shape[1]),
                              asdict(layout), catalog)

    def _csv_reader(self, columns=None):
        convert = pacsv.ConvertOptions(column_types={self.layout.id: pa.string()}, include_columns=columns)
        try:
            return pacsv.open_csv(self._csv, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                  convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            raise TableError(f"{self._csv.name}: not a readable CSV ({exc})") from exc

    # -- streaming
    def blocks(self, columns: bool = True, vectors: bool = True) -> Iterator[Block]:
        """Consecutive blocks of rows.  ``columns=False`` skips catalogue columns, ``vectors=False``
        the vectors (then ``Block.vectors`` is empty) — for cheap validation passes."""
        info, layout = self.info, self.layout
        catalog = info.catalog_columns if columns else []
        if info.kind == "parquet":
            wanted = [layout.id, layout.ra, layout.dec] + ([layout.embedding] if vectors else []) + catalog
            start = 0
            try:
                for batch in self._pq.iter_batches(batch_size=self.batch_rows, columns=wanted):
                    vecs = None if vectors else np.empty((batch.num_rows, 0), np.float32)
                    yield _block_from_table(batch, start, layout, info.dim, catalog, vecs)
                    start += batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise TableError(f"{self.path.name}: unreadable after row {start} ({exc})") from exc
            return
        start = 0
        wanted = [layout.id, layout.ra, layout.dec] + catalog
        try:
            for batch in self._csv_reader(columns=wanted):
                n = batch.num_rows
                vecs = self._npy[start:start + n] if vectors else np.empty((n, 0), np.float32)
                yield _block_from_table(batch, start, layout, info.dim, catalog, vecs)
                start += n
        except pa.ArrowInvalid as exc:
            raise TableError(f"{self._csv.name}: unreadable after row {start} ({exc})") from exc


# ----------------------------------------------------------------- validation

def block_problems(block: Block, check_vectors: bool = True,
                   max_id_length: int | None = None) -> tuple[np.ndarray, list[RowError]]:
    """(good mask, errors) of one block, every check but duplicates."""
    n = len(block)
    good = np.ones(n, dtype=bool)
    reasons: dict[int, str] = {}

    def flag(mask: np.ndarray, reason: str):
        for i in np.flatnonzero(mask & good):
            reasons[int(i)] = reason
        good[mask] = False

    flag(np.array([i is None for i in block.ids], dtype=bool), "missing id")
    if max_id_length:
        flag(np.array([i is not None and len(i) > max_id_length for i in block.ids], dtype=bool),
             f"id longer than {max_id_length} characters")
    flag(~np.isfinite(block.ra) | ~np.isfinite(block.dec), "missing RA/Dec")
    flag((block.ra < 0) | (block.ra >= 360), "RA outside [0, 360) degrees")
    flag((block.dec < -90) | (block.dec > 90), "Dec outside [-90, 90] degrees")
    if check_vectors:
        flag(block.bad_length, f"vector is missing or not of length {block.vectors.shape[1]}")
        flag(~np.isfinite(block.vectors).all(axis=1), "vector contains NaN or inf")
    errors = [RowError(block.start + i, block.ids[i] or "", reasons[i]) for i in sorted(reasons)]
    return good, errors


@dataclass
class Validation:
    """The outcome of :func:`validate`: which rows to keep, and why the others were not."""
    keep: np.ndarray                       # (n_rows,) bool
    errors: list[RowError]                 # at most MAX_ERRORS_KEPT, in row order
    n_errors: int                          # all of them

    @property
    def n_good(self) -> int:
        return int(self.keep.sum())


def _hash_id(text: str) -> int:
    return hash(text)   # per process, which is all this needs (exact recheck of collisions below)


def validate(table: EmbeddingTable, progress: Progress | None = None,
             max_id_length: int | None = None) -> Validation:
    """Pass over the whole table: per-row checks, then duplicate ids (first good row of an id kept)."""
    n = table.info.n_rows
    keep = np.zeros(n, dtype=bool)
    hashes = np.zeros(n, dtype=np.int64)
    errors: list[RowError] = []
    n_errors = 0
    for block in table.blocks(columns=False):
        good, errs = block_problems(block, max_id_length=max_id_length)
        lo, hi = block.start, block.start + len(block)
        keep[lo:hi] = good
        hashes[lo:hi] = [_hash_id(i) if ok else 0 for i, ok in zip(block.ids, good)]
        n_errors += len(errs)
        errors.extend(errs[:max(0, MAX_ERRORS_KEPT - len(errors))])
        if progress is not None:
            progress(hi, n, f"checked {hi:,} of {n:,} rows ({n_errors:,} problems)")
    rows = np.flatnonzero(keep)
    order = np.argsort(hashes[rows], kind="stable")
    sorted_hashes = hashes[rows][order]
    same = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    candidates = np.unique(np.concatenate([rows[order][same], rows[order][same + 1]])) if len(same) else rows[:0]
    del order, sorted_hashes, hashes
    dup_errors = _exact_duplicates(table, candidates)
    for err in dup_errors:
        keep[err.row] = False
    n_errors += len(dup_errors)
    errors = sorted(errors + dup_errors, key=lambda e: e.row)[:MAX_ERRORS_KEPT]
    return Validation(keep, errors, n_errors)


def _exact_duplicates(table: EmbeddingTable, candidates: np.ndarray) -> list[RowError]:
    """Among rows whose id hashes collide, the later rows of each exact id."""
    if not len(candidates):
        return []
    ids: dict[int, str] = {}
    for block in table.blocks(columns=False, vectors=False):
        lo, hi = block.start, block.start + len(block)
        for row in candidates[(candidates >= lo) & (candidates < hi)]:
            ids[int(row)] = block.ids[int(row) - lo]
    first: dict[str, int] = {}
    out = []
    for row in sorted(ids):
        text = ids[row]
        if text in first:
            out.append(RowError(row, text, f"duplicate id (first at row {first[text]}, kept)"))
        else:
            first[text] = row
    return out


# ----------------------------------------------------------------- writing

def _column_type(values: list) -> pa.DataType:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} and kinds:
        return pa.bool_()
    if kinds <= {int} and kinds:
        return pa.int64()
    if kinds <= {int, float} and kinds:
        return pa.float64()
    return pa.string()


def _coerce(values: list, dtype: pa.DataType) -> pa.Array:
    if dtype == pa.string():
        values = [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]
    try:
        return pa.array(values, type=dtype)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_try(v, dtype) for v in values], type=dtype)


def _try(value, dtype):
    try:
        pa.array([value], type=dtype)
        return value
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


class ParquetTableWriter:
    """Write an embedding table block by block (``write(ids, ra, dec, vectors, columns)``);
    the file appears at ``path`` only when the ``with`` block succeeds (ml.atomic).

    The catalogue columns' types are fixed by the first block (int, float, bool, else string);
    later values that do not fit become null."""

    def __init__(self, path: str | Path | None, dim: int, metadata: dict | None = None,
                 row_group_rows: int = BATCH_ROWS, sink=None):
        """``path`` (written atomically) or ``sink``, a writable binary file object (e.g. a
        streamed HTTP response's buffer)."""
        self.path, self.dim, self.metadata = (Path(path) if path else None), int(dim), metadata or {}
        self.sink = sink
        self.row_group_rows = row_group_rows
        self._writer = None
        self._schema = None
        self.n = 0

    def __enter__(self):
        self._atomic = atomic_path(self.path) if self.sink is None else None
        self._partial = self._atomic.__enter__() if self._atomic is not None else self.sink
        return self

    def __exit__(self, *exc):
        try:
            if self._writer is not None:
                self._writer.close()
            elif exc[0] is None:
                self._open({})
                self._writer.close()
        finally:
            if self._atomic is not None:
                self._atomic.__exit__(*exc)
        return False

    def _open(self, columns: dict[str, list]) -> None:
        fields = [pa.field("id", pa.string()), pa.field("ra", pa.float64()), pa.field("dec", pa.float64()),
                  pa.field("embedding", pa.list_(pa.float32(), self.dim))]
        fields += [pa.field(name, _column_type(values)) for name, values in columns.items()
                   if name not in ("id", "ra", "dec", "embedding")]
        self._schema = pa.schema(fields, metadata={"latentsky": json.dumps(self.metadata)})
        self._writer = pq.ParquetWriter(self._partial, self._schema)

    def write(self, ids: list[str], ra, dec, vectors: np.ndarray, columns: dict[str, list] | None = None) -> None:
        columns = columns or {}
        if self._writer is None:
            self._open(columns)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(ids)
        if vectors.shape != (n, self.dim):
            raise ValueError(f"vectors {vectors.shape} do not match {n} ids × {self.dim}")
        arrays = [pa.array([str(i) for i in ids], pa.string()),
                  pa.array(np.asarray(ra, dtype=np.float64)), pa.array(np.asarray(dec, dtype=np.float64)),
                  pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim)]
        for f in list(self._schema)[4:]:
            arrays.append(_coerce(columns.get(f.name, [None] * n), f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema),
                                 row_group_size=self.row_group_rows)
        self.n += n
