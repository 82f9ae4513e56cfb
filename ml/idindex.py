"""id <-> row without dicts: a sorted int64 id array plus its argsort permutation.

An artifact stores its galaxy ids in row order (``ids.npy``, (N,) int64).  To find the
row of a galaxy id we keep, next to it,
  ids.sorted.npy  (N,) int64  the same ids, ascending
  ids.order.npy   (N,) int64  row of each sorted id: ids[order[i]] == sorted[i]
Both are memory-mapped (``np.load(mmap_mode="r")``), so every process shares one copy
through the page cache, and a lookup is ``np.searchsorted``: O(log N) per id, no
N-sized Python object anywhere.  The pair is computed once per artifact and written
atomically (ml.atomic); a reader that finds it missing builds and writes it.

Example: ``IdIndex.for_ids_file(Path("…/ids.npy")).rows([42, 7])`` -> array([13, -1])
when galaxy 42 is row 13 and galaxy 7 is not in the set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.atomic import save_npy_atomic

MISSING = -1          # row returned for ids that are not in the index


class IdIndex:
    """Sorted ids + permutation; lookups by searchsorted.  Behaves like a read-only
    mapping {galaxy id: row} (``in``, ``[]``, ``get``, ``len``) without being one."""

    __slots__ = ("sorted_ids", "order")

    def __init__(self, sorted_ids: np.ndarray, order: np.ndarray):
        if sorted_ids.shape != order.shape or sorted_ids.ndim != 1:
            raise ValueError(f"sorted ids {sorted_ids.shape} and order {order.shape} do not align")
        self.sorted_ids = sorted_ids      # (N,) int64 ascending (often a read-only memmap)
        self.order = order                # (N,) int64 row of each sorted id

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, ids: np.ndarray) -> "IdIndex":
        """In-memory index of ``ids`` (row order).  Duplicate ids are refused: a row would be ambiguous."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        order = np.argsort(ids, kind="stable").astype(np.int64, copy=False)
        sorted_ids = ids[order]
        if len(sorted_ids) > 1:
            dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
            if len(dup):
                raise ValueError(f"id {int(sorted_ids[dup[0]])} appears more than once; an id index needs unique ids")
        return cls(sorted_ids, order)

    @staticmethod
    def paths(ids_path: Path) -> tuple[Path, Path]:
        """(sorted ids file, order file) that belong to an ``ids.npy`` file."""
        ids_path = Path(ids_path)
        stem = ids_path.name[:-4] if ids_path.name.endswith(".npy") else ids_path.name
        return ids_path.with_name(f"{stem}.sorted.npy"), ids_path.with_name(f"{stem}.order.npy")

    def save(self, ids_path: Path) -> None:
        """Write the pair next to ``ids_path`` atomically (order first: a reader needs both)."""
        sorted_path, order_path = self.paths(ids_path)
        save_npy_atomic(order_path, np.ascontiguousarray(self.order, dtype=np.int64))
        save_npy_atomic(sorted_path, np.ascontiguousarray(self.sorted_ids, dtype=np.int64))

    @classmethod
    def for_ids_file(cls, ids_path: Path, write: bool = True) -> "IdIndex":
        """The memory-mapped index of an ``ids.npy`` file; built from it (and saved, when
        ``write`` and the directory is writable) the first time anyone asks."""
        sorted_path, order_path = cls.paths(ids_path)
        if not (sorted_path.exists() and order_path.exists()):
            built = cls.build(np.load(ids_path, mmap_mode="r"))
            if not write:
                return built
            try:
                built.save(ids_path)
            except OSError:           # read-only data directory: serve from memory
                return built
        index = cls(np.load(sorted_path, mmap_mode="r"), np.load(order_path, mmap_mode="r"))
        if index.sorted_ids.dtype != np.int64 or index.order.dtype != np.int64:
            raise ValueError(f"{sorted_path} / {order_path} are not int64")
        return index

    # ------------------------------------------------------------------ lookups
    def rows(self, ids, missing: int = MISSING) -> np.ndarray:
        """Rows of ``ids`` (any order, any length) as int64; ``missing`` where an id is absent."""
        query = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = len(self.sorted_ids)
        if n == 0 or query.size == 0:
            return np.full(query.shape, missing, dtype=np.int64)
        pos = np.searchsorted(self.sorted_ids, query)
        clipped = np.minimum(pos, n - 1)
        found = np.asarray(self.sorted_ids[clipped]) == query
        out = np.full(query.shape, missing, dtype=np.int64)
        out[found] = np.asarray(self.order[clipped[found]], dtype=np.int64)
        return out

    def rows_strict(self, ids, what: str = "the index") -> np.ndarray:
        """Rows of ``ids``; KeyError naming the first unknown id."""
        query = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = self.rows(query)
        bad = np.flatnonzero(out < 0)
        if len(bad):
            raise KeyError(f"galaxy {int(query[bad[0]])} is not in {what}")
        return out

    def contains(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` are in the index."""
        return self.rows(ids) >= 0

    def __len__(self) -> int:
        return len(self.sorted_ids)

    __iter__ = None       # not a dict: iterating N ids one by one is what this replaces

    def __contains__(self, galaxy_id) -> bool:
        try:
            return bool(self.rows([int(galaxy_id)])[0] >= 0)
        except (TypeError, ValueError, OverflowError):
            return False

    def __getitem__(self, galaxy_id) -> int:
        row = int(self.rows([int(galaxy_id)])[0])
        if row < 0:
            raise KeyError(galaxy_id)
        return row

    def get(self, galaxy_id, default=None):
        try:
            return self[galaxy_id]
        except (KeyError, TypeError, ValueError, OverflowError):
            return default

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)})"
