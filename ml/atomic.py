"""Crash-safe file writes: readers see the old file or the complete new one, never half.

Every writer goes through ``atomic_path``: write a unique ``<name>.<pid>-<thread>.partial``
beside the target, fsync it (``durable=True``), then ``os.replace`` it over the target.
A failed write removes its partial file; two writers of one path never share one.
The checksums returned are the sha256 of the file's bytes, the same however it was written.
"""
from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np

HASH_BLOCK = 1 << 22  # bytes read per step when hashing a file


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write to (by name, e.g. faiss.write_index); renamed to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        yield partial
        if durable:
            fd = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file handle whose content appears at ``path`` only once the block succeeds."""
    with atomic_path(path, durable) as partial, open(partial, "wb") as handle:
        yield handle


def write_atomic(path: str | os.PathLike, data: bytes | str, durable: bool = True) -> str:
    """Write ``data`` (str as UTF-8) atomically; returns the sha256 of the bytes."""
    if isinstance(data, str):
        data = data.encode()
    with atomic_open(path, durable) as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()


def save_npz_atomic(path: str | os.PathLike, /, **arrays: np.ndarray) -> str:
    """``np.savez`` (uncompressed) atomically; returns the sha256 of the file (hashed from disk,
    so a large array is not held twice in memory)."""
    with atomic_path(path) as partial:
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        checksum = sha256_file(partial)
    return checksum


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` (no pickles) atomically, streamed: the array is not copied to a buffer."""
    with atomic_open(path) as handle:
        np.save(handle, array, allow_pickle=False)


def sha256_file(path: str | os.PathLike, stop: threading.Event | None = None) -> str:
    """sha256 of a file's bytes, read in blocks.  ``stop`` (set from another thread) ends the
    reading early; the digest returned is then of the bytes read so far."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while not (stop is not None and stop.is_set()) and (block := handle.read(HASH_BLOCK)):
            digest.update(block)
    return digest.hexdigest()
