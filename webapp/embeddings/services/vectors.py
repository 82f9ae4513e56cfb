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

import numpy as np
from django.conf import settings

from ml.atomic import save_npy_atomic
from ml.idindex import IdIndex

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


def write_embedding_set(es: EmbeddingSet, galaxy_ids: np.ndarray, vectors: np.ndarray) -> EmbeddingSet:
    """Store vectors + ids for ``es`` and mark it ready (ids and vectors must align)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    galaxy_ids = np.ascontiguousarray(galaxy_ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(galaxy_ids):
        raise ValueError(f"vectors {vectors.shape} and ids {galaxy_ids.shape} do not align")
    if not np.isfinite(vectors).all():
        raise ValueError("embedding contains NaN or inf; refusing to store it")
    directory, relative = new_artifact_dir(f"set{es.pk}")
    save_array_atomic(directory / "ids.npy", galaxy_ids)
    IdIndex.build(galaxy_ids).save(directory / "ids.npy")     # refuses duplicate ids
    checksum = save_array_atomic(directory / "vectors.npy", vectors)
    es.vectors_path = f"{relative}/vectors.npy"
    es.ids_path = f"{relative}/ids.npy"
    es.n, es.dim, es.checksum = int(vectors.shape[0]), int(vectors.shape[1]), checksum
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
