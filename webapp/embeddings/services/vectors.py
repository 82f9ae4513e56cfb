"""Reading and writing EmbeddingSet and LatentMap arrays.

Format (all under DATA_DIR/embeddings/<set id>-<uuid>/):
  vectors.npy  (N, D) float32, row order = ids.npy
  ids.npy      (N,) int64 Galaxy primary keys
  ids.sorted.npy, ids.order.npy  the id index (ml.idindex): id -> row by searchsorted,
               written with the set (or on first read for older sets)
  index.faiss  the search index (optional)
  map-<id>.npy (N, 2) float32 latent-map coordinates, same row order
Files are written to ``*.partial`` and renamed, so a reader never sees half an array,
and rows are only marked ready after the rename.  Readers memory-map and cache per
process, keyed by path and checksum.
"""
from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from django.conf import settings
from numpy.lib.format import open_memmap

from ml.atomic import atomic_path, save_npy_atomic
from ml.idindex import IdIndex
from ml.memmaps import release

from webapp.embeddings.models import ArtifactStatus, EmbeddingSet


def new_artifact_dir(prefix: str) -> tuple[Path, str]:
    """A fresh directory under DATA_DIR; returns (absolute path, path relative to DATA_DIR)."""
    relative = f"embeddings/{prefix}-{uuid.uuid4().hex[:10]}"
    absolute = Path(settings.DATA_DIR) / relative
    absolute.mkdir(parents=True, exist_ok=False)
    return absolute, relative


def sha256_array(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start in range(0, flat.size, 1 << 24):
        digest.update(flat[start:start + (1 << 24)])
    return digest.hexdigest()


def save_array_atomic(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as .npy atomically; returns the sha256 of its raw bytes (sha256_array),
    which is what EmbeddingSet.checksum and LatentMap.checksum hold."""
    save_npy_atomic(path, array)
    return sha256_array(array)


WRITE_BLOCK = 65_536  # rows per block when an in-memory array is written through the block writer


def write_embedding_set(es: EmbeddingSet, galaxy_ids: np.ndarray, vectors: np.ndarray) -> EmbeddingSet:
    """Store vectors + ids for ``es`` and mark it ready (ids and vectors must align)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(galaxy_ids):
        raise ValueError(f"vectors {vectors.shape} and ids {np.shape(galaxy_ids)} do not align")
    return write_embedding_set_blocks(es, galaxy_ids, (vectors[s:s + WRITE_BLOCK]
                                                       for s in range(0, max(len(vectors), 1), WRITE_BLOCK)))


def write_embedding_set_blocks(es: EmbeddingSet, galaxy_ids: np.ndarray, blocks: Iterable[np.ndarray]
                               ) -> EmbeddingSet:
    """Store vectors arriving as (B, D) blocks in row order (e.g. straight from the encoder)
    for ``es`` and mark it ready.  The blocks go into an open_memmap at ml.atomic's temporary
    name and the sha256 (same as sha256_array of the whole) is updated block by block, so
    no N x D copy is held in RAM; the file is published (renamed) only when all N rows
    arrived finite, and the row marked ready after that."""
    galaxy_ids = np.ascontiguousarray(galaxy_ids, dtype=np.int64)
    n = len(galaxy_ids)
    id_index = IdIndex.build(galaxy_ids)  # refuses duplicate ids before anything is written
    directory, relative = new_artifact_dir(f"set{es.pk}")
    digest, done, dim = hashlib.sha256(), 0, None
    with atomic_path(directory / "vectors.npy") as partial:
        out = None
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32)
            if out is None:
                if block.ndim != 2:
                    raise ValueError(f"vector blocks must be (rows, dim), got {block.shape}")
                dim = block.shape[1]
                out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim))
            if block.ndim != 2 or block.shape[1] != dim or done + len(block) > n:
                raise ValueError(f"vectors ({done + len(block)}+ rows, block {block.shape}) and ids ({n},) "
                                 "do not align")
            if not np.isfinite(block).all():
                raise ValueError("embedding contains NaN or inf; refusing to store it")
            out[done:done + len(block)] = block
            release(out, done, done + len(block))   # written to the page cache: not kept in this job's RSS
            digest.update(block.reshape(-1).view(np.uint8))
            done += len(block)
        if out is None or done != n:
            raise ValueError(f"vectors ({done} rows) and ids ({n},) do not align")
        out.flush()
        del out
    save_array_atomic(directory / "ids.npy", galaxy_ids)
    id_index.save(directory / "ids.npy")
    checksum = digest.hexdigest()
    es.vectors_path = f"{relative}/vectors.npy"
    es.ids_path = f"{relative}/ids.npy"
    es.n, es.dim, es.checksum = n, int(dim), checksum
    es.status = ArtifactStatus.READY
    es.save(update_fields=["vectors_path", "ids_path", "n", "dim", "checksum", "status"])
    return es


@lru_cache(maxsize=16)
def _load(vectors_path: str, ids_path: str, checksum: str):
    root = Path(settings.DATA_DIR)
    vectors = np.load(root / vectors_path, mmap_mode="r")
    ids = np.load(root / ids_path, mmap_mode="r")
    return ids, vectors, IdIndex.for_ids_file(root / ids_path)


def load_embedding_set(es: EmbeddingSet):
    """(galaxy ids (N,) int64 memmap, vectors (N, D) memmap, IdIndex id -> row) — cached per process.

    The IdIndex answers ``g in index``, ``index[g]``, ``index.get(g)`` and, for many ids at
    once, ``index.rows(ids)`` (-1 where missing) by searchsorted on memory maps."""
    if es.status != ArtifactStatus.READY:
        raise ValueError(f"embedding set {es.pk} is {es.status}, not ready")
    return _load(es.vectors_path, es.ids_path, es.checksum)


def rows_for(es: EmbeddingSet, galaxy_ids) -> np.ndarray:
    """Row numbers of the given galaxies in ``es`` (KeyError names the first unknown id)."""
    return id_index(es).rows_strict(galaxy_ids, what=f"embedding set {es.pk}")


def id_index(es: EmbeddingSet) -> IdIndex:
    """The set's id -> row index (memory-mapped, cached per process)."""
    return load_embedding_set(es)[2]
