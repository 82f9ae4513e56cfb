"""The ``embed`` job (gpu queue): one encoder, one or more surveys -> one EmbeddingSet.

Params: {"encoder_id", "surveys": [slugs], "name"?}. Result: {"embedding_set_id", "n", "dim",
"checksum"}. Rows follow the surveys in the given order, each in store-row order, so the
same encoder and surveys always give the same file and checksum (on CPU bit-for-bit).
A retried job reuses its EmbeddingSet row; the vectors are only published (file renamed,
row marked ready) once every survey is done, so nothing half-written is ever visible.
The vectors stream: each batch the encoder finishes is written into the open_memmap of the
file being built (vectors.write_embedding_set_blocks), so the job holds one batch, not
N x D copies, and the checksum is computed as the blocks go by.
"""
from __future__ import annotations

import time

import numpy as np

from ml.checkpoints import load_encoder
from ml.embed import iter_embed_source, pick_device
from ml.sources import StoreSource
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder, failed_on_error
from webapp.embeddings.services.encoders import abspath, galaxy_rows, resolve_surveys
from webapp.embeddings.services.encoding import load_encoder_model
from webapp.embeddings.services.vectors import write_embedding_set_blocks
from webapp.jobs.models import Job

BATCH = 512  # images per forward pass; GPU workers could take more but 512 saturates a small net


def _embedding_set_for(job: Job, encoder: Encoder, surveys, name: str) -> EmbeddingSet:
    es = EmbeddingSet.objects.filter(job=job).first()
    if es is None:
        es = EmbeddingSet.objects.create(encoder=encoder, job=job, status=ArtifactStatus.BUILDING,
                                         name=name or f"{encoder.name} · {' + '.join(s.slug for s in surveys)}")
        es.surveys.set(surveys)
    return es


def embed_surveys(encoder: Encoder, surveys, progress=None, device=None) -> tuple[np.ndarray, np.ndarray]:
    """(galaxy ids (N,), vectors (N, D)) for all galaxies of ``surveys`` in order (in RAM:
    for small sets and tests; the job streams with embed_survey_blocks)."""
    ids, blocks = embed_survey_blocks(encoder, surveys, progress, device)
    return ids, np.concatenate(list(blocks))


def embed_survey_blocks(encoder: Encoder, surveys, progress=None, device=None):
    """(galaxy ids (N,), iterator of (B, D) vector blocks in the same order).

    Row j of the output is the galaxy at store row rows[j] (galaxy_rows: ascending), so each
    encoder batch of store rows [start, stop) maps to one contiguous run of output rows and
    the blocks come out in order; store rows without a galaxy are dropped."""
    plan = [(survey, *galaxy_rows(survey)) for survey in surveys]
    ids = np.concatenate([g for _, _, g in plan]) if plan else np.zeros(0, dtype=np.int64)
    return ids, _blocks(encoder, plan, progress, device)


def _blocks(encoder: Encoder, plan, progress, device):
    # A private copy: the per-process cache (services.encoding) stays on the CPU for web use,
    # while this job may move its model to the GPU.
    model, preprocess, _ = load_encoder(abspath(encoder.checkpoint_path))
    device = device or pick_device()
    total = sum(survey.n_galaxies for survey, _, _ in plan)
    done = 0
    for survey, rows, _ in plan:
        source = StoreSource([survey.store_abspath])
        try:
            def step(n, _total, _message, offset=done, slug=survey.slug):
                if progress is not None:
                    progress(offset + n, total, f"embedding {slug}: {n:,} of {_total:,} images")
            start = 0
            for h in iter_embed_source(model, preprocess, source, BATCH, device=device, progress=step):
                stop = start + len(h)
                lo, hi = np.searchsorted(rows, [start, stop])
                yield h[rows[lo:hi] - start]                       # (b, D), b <= B
                start = stop
        finally:
            source.close()
        done += survey.n_galaxies


def run_embed_job(job: Job, progress) -> dict:
    params = job.params
    encoder = Encoder.objects.get(pk=params["encoder_id"])
    if encoder.status != ArtifactStatus.READY:
        raise ValueError(f"encoder {encoder.pk} ({encoder.name}) is {encoder.status}; only ready encoders embed")
    loaded = load_encoder_model(encoder)
    surveys = resolve_surveys(params.get("surveys") or [], image_kind=loaded.preprocess.image_kind,
                              bands=loaded.bands)
    es = _embedding_set_for(job, encoder, surveys, params.get("name", ""))
    started = time.monotonic()
    with failed_on_error(es):
        ids, blocks = embed_survey_blocks(encoder, surveys, progress)
        write_embedding_set_blocks(es, ids, blocks)
    seconds = time.monotonic() - started
    progress(1, 1, f"embedded {es.n:,} galaxies into {es.dim} dimensions in {seconds:.0f} s")
    return {"embedding_set_id": es.pk, "n": es.n, "dim": es.dim, "checksum": es.checksum,
            "seconds": round(seconds, 2), "images_per_second": round(es.n / max(seconds, 1e-9), 1)}
