"""Streaming through memory-mapped arrays without keeping them resident.

A job that walks a 5 GB ``vectors.npy`` (np.load(mmap_mode="r")) block by block leaves every
page it touched mapped into its address space, so its RSS ends at the file's size although
the pages are only page cache (shared, reclaimable).  ``release(array, start, stop)`` tells
the kernel (madvise MADV_DONTNEED) that rows [start, stop) are no longer needed by this
process: they leave its resident set and stay in the page cache, and a later read faults them
back in.  For a memmap opened for writing (MAP_SHARED) the written data is already in the page
cache, so nothing is lost.  Plain arrays, and platforms without madvise, are left alone.

numpy gives no madvise of its own (np.memmap keeps the mmap object in ``_mmap``), so this is
the one place that reaches for it.
"""
from __future__ import annotations

import mmap

import numpy as np

PAGE = mmap.PAGESIZE


def _owner(array: np.ndarray):
    """The np.memmap (or array) at the bottom of ``array``'s base chain that holds an mmap."""
    node = array
    while node is not None:
        if isinstance(getattr(node, "_mmap", None), mmap.mmap):
            return node
        node = getattr(node, "base", None)
    return None


def release(array: np.ndarray, start: int = 0, stop: int | None = None) -> bool:
    """Drop rows [start, stop) of a memory-mapped ``array`` from this process's resident set.
    Returns whether anything was released (False for in-memory arrays)."""
    owner = _owner(array) if isinstance(array, np.ndarray) else None
    if owner is None or not hasattr(owner._mmap, "madvise") or array.ndim == 0:
        return False
    stop = len(array) if stop is None else min(stop, len(array))
    if stop <= start or not array.flags.c_contiguous:
        return False
    mm = owner._mmap
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data  # address of the mapping's first byte
    row_bytes = array.strides[0]
    first = array.ctypes.data + start * row_bytes - base
    last = array.ctypes.data + stop * row_bytes - base
    first -= first % PAGE
    last = min(len(mm), last)
    if first < 0 or last <= first:
        return False
    mm.madvise(mmap.MADV_DONTNEED, first, last - first)
    return True
