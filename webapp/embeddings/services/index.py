"""The `build_index` job: a faiss index for one EmbeddingSet, saved beside its vectors.

Exact (flat) below IndexConfig.exact_below rows, IVF (nprobe tuned to recall@50 >= 0.98 on
the data itself) above, and from IndexConfig.compressed_above rows (10^6) IVF-PQ re-ranked
from a float16 copy of the vectors written beside the index (index.faiss.f16.npy); see
ml/search.py, ml/compressed.py and benchmarks/search.py for why.  The index is
written to index.faiss.partial and renamed, and the row says ``index_status=ready`` only
after that, so web processes never load half a file; re-running replaces the index and
its build stamp, which makes every web process reload it on its next query.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from ml.search import RERANK_SUFFIX, IndexConfig, SearchIndex, config_from_dict
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, failed_on_error
from webapp.embeddings.services.vectors import load_embedding_set

INDEX_FILE = "index.faiss"


def index_relpath(es: EmbeddingSet) -> str:
    """index.faiss in the same directory as the set's vectors.npy (relative to DATA_DIR)."""
    return str(Path(es.vectors_path).parent / INDEX_FILE)


def index_kind_name(index: SearchIndex) -> str:
    name = type(index.index).__name__
    return {"IndexFlatL2": "exact", "IndexIVFFlat": "IVF", "IndexHNSWFlat": "HNSW", "IndexIVFPQ": "IVF-PQ",
            "IndexPreTransform": "OPQ+IVF-PQ"}.get(name, name)


def build_for_set(es: EmbeddingSet, cfg: IndexConfig | None = None, progress=None) -> EmbeddingSet:
    """Build, save and register the index of ``es``; returns the updated row."""
    if es.status != ArtifactStatus.READY:
        raise ValueError(f"embedding set {es.pk} is {es.status}; embed it before building an index")
    cfg = cfg or config_from_dict(es.index_config.get("config", {}) if es.index_config else {})
    EmbeddingSet.objects.filter(pk=es.pk).update(index_status=ArtifactStatus.BUILDING)
    with failed_on_error(es, "index_status"):
        _, vectors, _ = load_embedding_set(es)
        started = time.monotonic()
        relative = index_relpath(es)
        path = Path(settings.DATA_DIR) / relative
        # vectors stay memory-mapped; a compressed index streams its float16 rows to disk
        index = SearchIndex.build(vectors, cfg, progress, rerank_path=str(path) + RERANK_SUFFIX)
        seconds = time.monotonic() - started
        index.save(path)
    es.index_path = relative
    es.index_kind = index_kind_name(index)
    es.index_config = {"config": dataclasses.asdict(index.cfg), "tuning": index.tuning,
                       "ntotal": index.ntotal, "build_seconds": round(seconds, 2),
                       "built_at": timezone.now().isoformat()}
    es.index_status = ArtifactStatus.READY
    es.save(update_fields=["index_path", "index_kind", "index_config", "index_status"])
    return es


def run_build_index_job(job, progress) -> dict:
    """Job handler: params {"embedding_set_id": int, "config": {IndexConfig overrides}}."""
    es = EmbeddingSet.objects.filter(pk=job.params.get("embedding_set_id")).first()
    if es is None:
        raise ValueError(f"embedding set {job.params.get('embedding_set_id')} does not exist")
    cfg = dataclasses.replace(IndexConfig(), **_known(job.params.get("config") or {}))
    progress(0, max(es.n, 1), f"building the search index of {es.n:,} vectors")
    es = build_for_set(es, cfg, progress)
    progress(es.n, max(es.n, 1), f"{es.index_kind} index ready")
    return {"embedding_set_id": es.pk, "index_kind": es.index_kind, "index_path": es.index_path,
            "build_seconds": es.index_config["build_seconds"], "tuning": es.index_config["tuning"]}


def _known(overrides: dict) -> dict:
    names = {f.name for f in dataclasses.fields(IndexConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown index option(s) {sorted(unknown)}; known: {sorted(names)}")
    return overrides
