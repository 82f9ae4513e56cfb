"""Chunked HDF5 image store: one file per survey, dataset "images" of shape (N, C, H, W).

Row i of the store is the cutout of catalogue object i. Pixels are float32 (for
simulated and ingested surveys: nanomaggies per pixel, see ml.vocab.FLUX_UNIT).

Writing is crash-safe: `ImageStoreWriter` writes `<path>.partial`, and only a successful
close flushes, fsyncs and atomically renames it to `path`. A store that exists under its
final name is therefore always complete, and its checksum (sha256 over the raw
little-endian float32 pixels in row order) is known on close, so the database row that
points at the file can record shape and checksum together.

Readers open the final (immutable) file read-only with HDF5 file locking off, so any
number of processes (web, Celery workers) may read it at once, also on network
filesystems. Open a reader inside each process; do not share one across fork().
"""
from __future__ import annotations

import errno
import io
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

DATASET = "images"
_ROWS_PER_HASH_BLOCK = 256  # rows hashed per read: ~12 MiB for 3x64x64, bounded memory


class ImageStoreWriter:
    """Append (B, C, H, W) float batches to a new store; atomic publish on close.

    Example:
        with ImageStoreWriter("sdss.h5", bands=("g", "r", "i"), size=64) as w:
            w.append(batch)          # (B, 3, 64, 64) float32
        shape, sha = w.result        # also returned by w.close()
    """

    def __init__(self, path: str | Path, bands: Sequence[str], size: int,
                 attrs: dict | None = None, rows_per_chunk: int = 1,
                 compression: str | None = None, min_free_bytes: int = 0):
        self.path = Path(path)
        # Refuse a batch unless this much disk stays free after it: HDF5 does not survive a
        # write that fails with ENOSPC (closing the file afterwards can crash the process).
        self.min_free_bytes = int(min_free_bytes)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.bands = tuple(bands)
        self.size = int(size)
        self.item_shape = (len(self.bands), self.size, self.size)
        self.result: tuple[tuple[int, ...], str] | None = None
        self._hash = hashlib.sha256()
        self._n = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = _SpaceGuardFile(self.partial, "w+b")
        self._file = h5py.File(self._fh, "w")
        # Chunk per image (or a few) so random access reads only what it needs.
        self._ds = self._file.create_dataset(
            DATASET, shape=(0, *self.item_shape), maxshape=(None, *self.item_shape),
            dtype="<f4", chunks=(max(1, int(rows_per_chunk)), *self.item_shape),
            compression=compression)
        self._file.attrs["bands"] = ",".join(self.bands)
        self._file.attrs["size"] = self.size
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value

    def append(self, batch: np.ndarray) -> None:
        """Append a (B, C, H, W) or single (C, H, W) real-floating batch of finite pixels."""
        arr = np.asarray(batch)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != self.item_shape:
            raise ValueError(f"batch shape {tuple(np.shape(batch))} does not match "
                             f"(B, {', '.join(map(str, self.item_shape))})")
        if arr.dtype.kind != "f":
            raise ValueError(f"batch dtype {arr.dtype} is not floating point")
        arr = np.ascontiguousarray(arr, dtype="<f4")
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(1))[0])
            raise ValueError(f"non-finite pixels (NaN/inf) in batch row {bad} "
                             f"(store row {self._n + bad})")
        self._check_free_space(arr.nbytes)
        start = self._n
        self._ds.resize(start + len(arr), axis=0)
        self._ds[start:start + len(arr)] = arr
        self._raise_if_write_failed()
        self._hash.update(arr.tobytes())
        self._n += len(arr)

    def __len__(self) -> int:
        return self._n

    def _raise_if_write_failed(self) -> None:
        if self._fh.failed is not None:
            raise OSError(self._fh.failed.errno, f"{os.strerror(self._fh.failed.errno)} while writing {self.partial}")

    def _check_free_space(self, nbytes: int) -> None:
        if not self.min_free_bytes:
            return
        free = shutil.disk_usage(self.partial.parent).free
        if free < nbytes + self.min_free_bytes:
            raise OSError(errno.ENOSPC, f"No space left on device ({free / 2**20:.1f} MiB free, "
                          f"{(nbytes + self.min_free_bytes) / 2**20:.1f} MiB needed with headroom)")

    def close(self) -> tuple[tuple[int, ...], str]:
        """Flush, fsync and rename to the final path; return (shape, sha256 hex)."""
        if self.result is not None:
            return self.result
        self._check_free_space(0)
        self._file.attrs["checksum_sha256"] = self._hash.hexdigest()
        self._file.close()
        self._raise_if_write_failed()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        _fsync_path(self.partial)
        os.replace(self.partial, self.path)
        _fsync_path(self.path.parent)  # make the rename itself durable
        self.result = ((self._n, *self.item_shape), self._hash.hexdigest())
        return self.result

    def abort(self) -> None:
        """Drop the partial file (called automatically when the `with` body raises)."""
        try:
            self._file.close()
            self._fh.close()
        except Exception:  # the partial file is discarded anyway
            pass
        finally:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "ImageStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ImageStoreReader:
    """Read-only view of a finished store. Use `open_store(path)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = h5py.File(self.path, "r", locking=False)
        self._ds = self._file[DATASET]
        self.shape: tuple[int, ...] = tuple(self._ds.shape)
        self.bands: tuple[str, ...] = tuple(str(self._file.attrs["bands"]).split(","))
        self.attrs: dict = dict(self._file.attrs)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, i: int) -> np.ndarray:
        """One cutout, (C, H, W) float32."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for store of {len(self)} rows")
        return self._ds[int(i) % len(self)]

    def read_many(self, indices: Iterable[int]) -> np.ndarray:
        """Cutouts for `indices` in the requested order, (B, C, H, W) float32.

        HDF5 fancy reads need increasing, unique rows, so we read the sorted unique
        set once (sequential chunk access) and scatter back; duplicates are allowed.
        """
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices,
                         dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=np.float32)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"indices out of range for store of {len(self)} rows")
        unique, inverse = np.unique(idx, return_inverse=True)
        return self._ds[unique][inverse]

    def iter_blocks(self, rows: int = _ROWS_PER_HASH_BLOCK):
        """Yield (start, block) in row order with bounded memory."""
        for start in range(0, len(self), rows):
            yield start, self._ds[start:start + rows]

    def checksum(self) -> str:
        """sha256 of the raw little-endian float32 pixels in row order (streamed)."""
        h = hashlib.sha256()
        for _, block in self.iter_blocks():
            h.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
        return h.hexdigest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ImageStoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: str | Path) -> ImageStoreReader:
    """Open a finished store read-only. Raises FileNotFoundError if it is not published."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image store {path} does not exist (not finished yet?)")
    return ImageStoreReader(path)


def array_checksum(images: np.ndarray) -> str:
    """The store checksum of an in-memory (N, C, H, W) array, for comparison."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype="<f4").tobytes()).hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _SpaceGuardFile(io.FileIO):
    """The store's file, handed to HDF5 as a file object (h5py's "fileobj" driver).

    Written by hand because no library offers it: HDF5 does not survive a write that
    fails with ENOSPC/EDQUOT (closing the file afterwards can crash the process), so
    such a failure is recorded here and hidden from HDF5; later writes are dropped and
    the writer raises a clear OSError and discards the file.
    """

    failed: OSError | None = None

    def write(self, data) -> int:
        if self.failed is not None:
            return len(data)
        try:
            return super().write(data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.failed = exc
            return len(data)
