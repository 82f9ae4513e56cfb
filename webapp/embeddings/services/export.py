"""Export any EmbeddingSet as an embedding table (the ``latentsky`` layout of
ml/embedding_table.py): columns id, ra, dec, embedding (fixed-size list<float32>) and the
galaxies' catalogue columns, so ``import_embeddings`` reads it back as is.

Rows follow the set's row order, read in blocks of EXPORT_BLOCK (ids → Galaxy rows by
primary key, vectors from the memory map): memory is O(block), never O(N).  ``id`` is the
galaxy's source id; for a set over several surveys it is "<survey slug>:<source id>".
``stream_parquet`` yields the same bytes for a streamed download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ml.embedding_table import ParquetTableWriter
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, data_path

EXPORT_BLOCK = 10_000     # rows per block (and per Parquet row group)
RESERVED = ("id", "ra", "dec", "embedding")


def _arrays(es: EmbeddingSet):
    if es.status != ArtifactStatus.READY:
        raise ValueError(f"embedding set {es.pk} is {es.status}, not ready")
    ids = np.load(data_path(es.ids_path), mmap_mode="r")
    vectors = np.load(data_path(es.vectors_path), mmap_mode="r")
    return ids, vectors


def _metadata(es: EmbeddingSet) -> dict:
    return {"embedding_set": es.pk, "name": es.name, "encoder": es.encoder.name,
            "encoder_source": es.encoder.source, "n": es.n, "dim": es.dim, "checksum": es.checksum,
            "surveys": list(es.surveys.values_list("slug", flat=True))}


def _blocks(es: EmbeddingSet, ids, vectors, progress=None):
    multi = es.surveys.count() > 1
    n = len(ids)
    for lo in range(0, n, EXPORT_BLOCK):
        block_ids = np.asarray(ids[lo:lo + EXPORT_BLOCK], dtype=np.int64)
        rows = {pk: (sid, ra, dec, meta, slug) for pk, sid, ra, dec, meta, slug in
                Galaxy.objects.filter(pk__in=block_ids.tolist())
                .values_list("pk", "source_id", "ra", "dec", "metadata", "survey__slug")}
        missing = [int(g) for g in block_ids if int(g) not in rows]
        if missing:
            raise ValueError(f"embedding set {es.pk} names galaxies that no longer exist (e.g. {missing[0]})")
        ordered = [rows[int(g)] for g in block_ids]
        keys: list[str] = []
        for _, _, _, meta, _ in ordered:
            for key in (meta or {}):
                if key not in keys and key not in RESERVED:
                    keys.append(key)
        out_ids = [f"{slug}:{sid}" if multi else sid for sid, _, _, _, slug in ordered]
        ra = np.array([np.nan if r[1] is None else r[1] for r in ordered], dtype=np.float64)
        dec = np.array([np.nan if r[2] is None else r[2] for r in ordered], dtype=np.float64)
        columns = {k: [(r[3] or {}).get(k) for r in ordered] for k in keys}
        yield out_ids, ra, dec, np.asarray(vectors[lo:lo + EXPORT_BLOCK], dtype=np.float32), columns
        if progress is not None:
            progress(min(lo + EXPORT_BLOCK, n), n, f"exported {min(lo + EXPORT_BLOCK, n):,} of {n:,} rows")


def export_embedding_set(es: EmbeddingSet, out: str | Path, progress=None) -> int:
    """Write ``es`` as a Parquet embedding table at ``out`` (atomically); returns the row count."""
    ids, vectors = _arrays(es)
    with ParquetTableWriter(out, es.dim, _metadata(es), row_group_rows=EXPORT_BLOCK) as writer:
        for block in _blocks(es, ids, vectors, progress):
            writer.write(*block)
    return writer.n


class _Chunks:
    """A write-only file object that collects what pyarrow writes, for streaming."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.closed = False
        self.position = 0

    def write(self, data) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_parquet(es: EmbeddingSet) -> Iterator[bytes]:
    """The export file's bytes, a row group at a time (for a StreamingHttpResponse)."""
    ids, vectors = _arrays(es)
    sink = _Chunks()
    with ParquetTableWriter(None, es.dim, _metadata(es), row_group_rows=EXPORT_BLOCK, sink=sink) as writer:
        for block in _blocks(es, ids, vectors):
            writer.write(*block)
            chunk = sink.take()
            if chunk:
                yield chunk
    tail = sink.take()
    if tail:
        yield tail
