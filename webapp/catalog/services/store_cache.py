"""One open image-store reader per survey per process (a small LRU).

Opening an HDF5 file costs ~1 ms plus metadata reads; a grid page asks for 100
thumbnails, so every request re-opening the store would dominate cold rendering.
Readers are keyed by the store's absolute path and re-opened when the file on
disk changes (a re-ingest replaces it atomically, so inode/mtime/size change).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ml.imagestore import open_store

MAX_OPEN_READERS = 8  # surveys browsed at once by one process; each holds one file handle

_lock = threading.RLock()  # guards the LRU and, because h5py is not re-entrant, every read
_readers: "OrderedDict[str, tuple[tuple, object]]" = OrderedDict()


class StoreMissing(FileNotFoundError):
    """The survey's image store file does not exist (not ingested yet, or deleted)."""


def _file_identity(path: Path) -> tuple:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _close(reader) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # a reader of a replaced file may already be invalid
            pass


def get_reader(path: Path | str):
    """The cached reader for ``path``, opened (or re-opened after a change) on demand."""
    key = str(Path(path).resolve())
    try:
        identity = _file_identity(Path(key))
    except FileNotFoundError:
        raise StoreMissing(f"image store {key} does not exist") from None
    with _lock:
        entry = _readers.get(key)
        if entry is not None and entry[0] == identity:
            _readers.move_to_end(key)
            return entry[1]
        if entry is not None:
            _close(entry[1])
        reader = open_store(key)
        _readers[key] = (identity, reader)
        _readers.move_to_end(key)
        while len(_readers) > MAX_OPEN_READERS:
            _, (_, oldest) = _readers.popitem(last=False)
            _close(oldest)
        return reader


def read_images(path: Path | str, indices: list[int]):
    """float32 images (len(indices), C, H, W) read in one call under the store lock."""
    with _lock:
        reader = get_reader(path)
        indices = [int(i) for i in indices]
        if len(indices) > 1 and indices == list(range(indices[0], indices[0] + len(indices))):
            return reader.read_many(indices)  # one contiguous run: a single hyperslab read
        # Scattered rows: HDF5 point selections are ~10x slower than one read per row.
        return np.stack([reader.read(i) for i in indices]) if indices else reader.read_many([])


def close_all() -> None:
    """Close every cached reader (tests, and before a store file is deleted)."""
    with _lock:
        while _readers:
            _, (_, reader) = _readers.popitem()
            _close(reader)


def open_reader_count() -> int:
    with _lock:
        return len(_readers)
