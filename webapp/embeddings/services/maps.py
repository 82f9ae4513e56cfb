"""The `umap` job: an EmbeddingSet -> a LatentMap of N x 2 coordinates (ml/projection.py).

Small sets (N <= UMAPConfig.sample_threshold, 200,000 by default) are fitted whole in
the job.  Larger sets are fitted on a sample; the fitted reducer is saved beside the
vectors and the remaining rows are placed by `umap_chunk` child jobs, one per
UMAPConfig.chunk_size rows.  Every cpu worker that is free picks chunk messages up; the
parent job does not sit idle waiting either: it claims queued chunks itself through the
same atomic claim (services.execute_job), so one worker finishes the map alone and ten
share it, and a chunk whose worker died (stale heartbeat) is claimed again.  Progress
lives on Job rows throughout: the parent's bar counts finished chunks, each chunk has
its own.  (A Celery chord would need a result backend, which this project does not run:
job outcomes live on Job rows.)

Files, all in the set's directory: map-<id>.npy (N, 2) float32 (written .partial then
renamed; the row is marked ready only after), map-<id>-reducer.pkl and
map-<id>-parts/<start>-<stop>.npy for the chunked path.  Re-running a job (after a worker
was lost) reuses its LatentMap row, saved reducer, existing children and finished chunks.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from ml.projection import (PLACEMENTS, UMAPConfig, assemble_coords, fit_projection, load_projection, plan_chunks,
                           save_projection, transform_chunk)
from ml.progress import check_cancelled, span
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, LatentMap, failed_on_error
from webapp.embeddings.services.vectors import load_embedding_set, save_array_atomic

CHUNK_KIND = "umap_chunk"
POLL_SECONDS = 1.0  # how often the parent looks at chunks that other workers are running


# ----------------------------------------------------------------- files

def _set_dir(es: EmbeddingSet) -> str:
    return str(Path(es.vectors_path).parent)


def coords_relpath(lm: LatentMap) -> str:
    return f"{_set_dir(lm.embedding_set)}/map-{lm.pk}.npy"


def _abs(relative: str) -> Path:
    return Path(settings.DATA_DIR) / relative


def reducer_path(lm: LatentMap) -> Path:
    return _abs(f"{_set_dir(lm.embedding_set)}/map-{lm.pk}-reducer.pkl")


def parts_dir(lm: LatentMap) -> Path:
    return _abs(f"{_set_dir(lm.embedding_set)}/map-{lm.pk}-parts")


def write_map_coords(lm: LatentMap, coords: np.ndarray, seconds: float | None = None) -> LatentMap:
    """Store (N, 2) coords for ``lm`` atomically, then mark it ready."""
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    if coords.shape != (lm.embedding_set.n, 2):
        raise ValueError(f"coords {coords.shape} do not match embedding set of {lm.embedding_set.n} rows")
    if not np.isfinite(coords).all():
        raise ValueError("map coordinates contain NaN or inf; refusing to store them")
    relative = coords_relpath(lm)
    lm.checksum = save_array_atomic(_abs(relative), coords)
    lm.coords_path, lm.n, lm.status = relative, len(coords), ArtifactStatus.READY
    if seconds is not None:
        lm.seconds = round(seconds, 2)
    lm.save(update_fields=["coords_path", "checksum", "n", "status", "seconds"])
    return lm


@lru_cache(maxsize=8)
def _load_coords(path: str, checksum: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")   # shared through the page cache; a request reads its rows only


def load_coords(lm: LatentMap) -> np.ndarray:
    """(N, 2) float32 coordinates of a ready map (read-only memory map), cached per process."""
    if lm.status != ArtifactStatus.READY:
        raise ValueError(f"map {lm.pk} is {lm.status}, not ready")
    return _load_coords(str(_abs(lm.coords_path)), lm.checksum)


# ----------------------------------------------------------------- the umap job

def umap_config(overrides: dict | None) -> UMAPConfig:
    names = {f.name for f in dataclasses.fields(UMAPConfig)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise ValueError(f"unknown UMAP option(s) {sorted(unknown)}; known: {sorted(names)}")
    cfg = dataclasses.replace(UMAPConfig(), **(overrides or {}))
    if cfg.placement not in PLACEMENTS:
        raise ValueError(f"UMAP placement must be one of {', '.join(PLACEMENTS)}, got {cfg.placement!r}")
    return cfg


def _map_for_job(job, es: EmbeddingSet, cfg: UMAPConfig) -> LatentMap:
    """The job's LatentMap row: the one a previous attempt created, or a new one."""
    lm = LatentMap.objects.filter(job=job).select_related("embedding_set").first()
    if lm is None:
        lm = LatentMap.objects.create(embedding_set=es, job=job, params=dataclasses.asdict(cfg), n=es.n)
        lm.embedding_set = es
    return lm


def run_umap_job(job, progress) -> dict:
    """Job handler: params {"embedding_set_id": int, "config": {UMAPConfig overrides}}."""
    es = EmbeddingSet.objects.filter(pk=job.params.get("embedding_set_id")).first()
    if es is None:
        raise ValueError(f"embedding set {job.params.get('embedding_set_id')} does not exist")
    if es.status != ArtifactStatus.READY:
        raise ValueError(f"embedding set {es.pk} is {es.status}; it must be ready before mapping")
    cfg = umap_config(job.params.get("config"))
    lm = _map_for_job(job, es, cfg)
    started = time.monotonic()
    with failed_on_error(lm):
        _, vectors, _ = load_embedding_set(es)
        chunks = plan_chunks(es.n, cfg)
        if chunks:
            coords, extra = _sampled_map(job, lm, vectors, cfg, chunks, progress)
        else:
            coords, extra = _whole_map(vectors, cfg, progress)
        lm.params = {**dataclasses.asdict(cfg), **extra}
        lm.save(update_fields=["params"])
        write_map_coords(lm, coords, time.monotonic() - started)
    if chunks:
        shutil.rmtree(parts_dir(lm), ignore_errors=True)  # assembled into map-<id>.npy
    _prepare_sky_cache(es)
    tiles_job = _queue_tiles(job, lm)
    progress(1, 1, f"map of {es.n:,} galaxies ready" + (f"; tiles queued (job {tiles_job.pk})" if tiles_job else ""))
    return {"latent_map_id": lm.pk, "embedding_set_id": es.pk, "n": es.n, "seconds": lm.seconds,
            "chunks": len(chunks), "tiles_job": tiles_job.pk if tiles_job else None}


def _queue_tiles(job, lm: LatentMap):
    """Maps above settings.MAP_TILE_THRESHOLD are served as tiles: queue their build (once per map)."""
    from webapp.jobs.models import Job
    from webapp.jobs.services import create_job

    if (lm.n or 0) <= settings.MAP_TILE_THRESHOLD:  # map_tiles.tiled (which imports this module)
        return None
    earlier = Job.objects.filter(kind="map_tiles", params__latent_map_id=lm.pk).first()
    return earlier or create_job("map_tiles", {"latent_map_id": lm.pk}, user=job.launched_by,
                                 title=f"Map tiles: map {lm.pk}")


def _prepare_sky_cache(es: EmbeddingSet) -> None:
    """Write the set's positions file now, so the first visitor of the map does not wait for it."""
    from webapp.embeddings.services.sky import sky_index
    try:
        sky_index(es)
    except Exception:  # only a cache: the page builds it on demand
        logging.getLogger(__name__).warning("could not prepare sky positions of set %s", es.pk, exc_info=True)


def _fit(vectors, cfg: UMAPConfig, progress, lo: float, hi: float, n_fit: int):
    progress(lo, 1, f"building the neighbour graph of {n_fit:,} galaxies")
    epochs = span(progress, lo + (hi - lo) * 0.3, hi)
    return fit_projection(vectors, cfg, on_epoch=lambda d, t: epochs(d, t, f"UMAP layout: epoch {d}/{t}"))


def _whole_map(vectors, cfg: UMAPConfig, progress) -> tuple[np.ndarray, dict]:
    fitted = _fit(np.asarray(vectors), cfg, progress, 0.0, 0.95, len(vectors))
    return fitted.sample_coords, {"normalisation": fitted.transform_record(), "fit_rows": len(vectors)}


def _sampled_map(job, lm: LatentMap, vectors, cfg: UMAPConfig, chunks, progress) -> tuple[np.ndarray, dict]:
    path = reducer_path(lm)
    if path.exists():  # a previous attempt of this job already fitted
        fitted = load_projection(path)
    else:
        fitted = _fit(vectors, cfg, progress, 0.0, 0.35, min(cfg.sample_size, len(vectors)))
        save_projection(fitted, path)
    parts_dir(lm).mkdir(exist_ok=True)
    children = _chunk_jobs(job, lm, chunks)
    share = span(progress, 0.35, 0.97)
    _run_and_wait(job, children, share)
    parts = [((start, stop), np.load(_chunk_file(lm, start, stop))) for start, stop in chunks]
    progress(0.98, 1, "assembling the map")
    coords = assemble_coords(len(vectors), fitted, parts)
    return coords, {"normalisation": fitted.transform_record(), "fit_rows": len(fitted.sample_rows),
                    "chunks": len(chunks), "chunk_jobs": [c.pk for c in children]}


def _chunk_jobs(job, lm: LatentMap, chunks) -> list:
    from webapp.jobs.models import Job
    from webapp.jobs.services import create_job

    earlier = Job.objects.filter(parent=job, kind=CHUNK_KIND)
    # A retry of this job gives chunks that failed or were cancelled last time another go.
    earlier.filter(status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).update(
        status=Job.Status.QUEUED, cancel_requested=False, error="", finished_at=None,
        message="re-queued by a retry of the map job")
    existing = {(c.params.get("start"), c.params.get("stop")): c for c in earlier}
    out = []
    for start, stop in chunks:
        child = existing.get((start, stop)) or create_job(
            CHUNK_KIND, {"latent_map_id": lm.pk, "start": start, "stop": stop}, parent=job,
            user=job.launched_by, title=f"UMAP rows {start:,}-{stop:,} of map {lm.pk}")
        out.append(child)
    return out


def _run_and_wait(job, children, progress) -> None:
    """Run queued chunks here (atomic claim) and wait for those other workers hold."""
    from datetime import timedelta

    from webapp.jobs.models import Job
    from webapp.jobs.services import JobCancelled, execute_job, request_cancel

    ids = [c.pk for c in children]
    try:
        while True:
            check_cancelled(progress)  # the map job's own Cancel wins over its chunks' outcome
            rows = list(Job.objects.filter(pk__in=ids).order_by("id"))
            bad = [j for j in rows if j.status in (Job.Status.FAILED, Job.Status.CANCELLED)]
            if bad:
                raise RuntimeError(f"chunk job {bad[0].pk} {bad[0].status}: {bad[0].message}")
            done = sum(j.status == Job.Status.SUCCEEDED for j in rows)
            progress(done, len(ids), f"placed {done} of {len(ids)} chunks")
            if done == len(ids):
                return
            stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
            runnable = [j for j in rows if j.status == Job.Status.QUEUED
                        or (j.status == Job.Status.RUNNING and j.heartbeat_at and j.heartbeat_at < stale)]
            if runnable:
                execute_job(runnable[0].pk, worker=f"{job.worker or 'worker'} (map job {job.pk})")
            else:
                time.sleep(POLL_SECONDS)
    except JobCancelled:
        for child in Job.objects.filter(pk__in=ids):
            request_cancel(child)
        raise


# ----------------------------------------------------------------- the chunk job

def _chunk_file(lm: LatentMap, start: int, stop: int) -> Path:
    return parts_dir(lm) / f"{start}-{stop}.npy"


@lru_cache(maxsize=2)
def _projection(path: str, mtime: float):
    return load_projection(path)


def run_umap_chunk_job(job, progress) -> dict:
    """Job handler: place rows [start, stop) of a sampled map with its saved reducer."""
    lm = LatentMap.objects.filter(pk=job.params.get("latent_map_id")).select_related("embedding_set").first()
    if lm is None:
        raise ValueError(f"latent map {job.params.get('latent_map_id')} does not exist")
    start, stop = int(job.params["start"]), int(job.params["stop"])
    out = _chunk_file(lm, start, stop)
    if out.exists():  # finished by an earlier attempt
        return {"latent_map_id": lm.pk, "rows": stop - start, "reused": True}
    path = reducer_path(lm)
    progress(0, stop - start, "loading the fitted UMAP")
    fitted = _projection(str(path), path.stat().st_mtime)
    _, vectors, _ = load_embedding_set(lm.embedding_set)
    coords = np.empty((stop - start, 2), dtype=np.float32)
    step = 5_000  # rows per transform call: progress and cancel granularity
    for a in range(start, stop, step):
        b = min(stop, a + step)
        coords[a - start:b - start] = transform_chunk(fitted, vectors[a:b])
        progress(b - start, stop - start, f"placed rows {a:,}-{b:,}")
        _stop_if_map_job_cancelled(job)
    save_array_atomic(out, coords)
    return {"latent_map_id": lm.pk, "rows": stop - start, "reused": False}


def _stop_if_map_job_cancelled(job) -> None:
    """A chunk stops with its map job: cancelling the map must not leave workers busy on it."""
    from webapp.jobs.models import Job
    from webapp.jobs.services import JobCancelled

    if job.parent_id and Job.objects.filter(pk=job.parent_id, cancel_requested=True).exists():
        raise JobCancelled("the map job was cancelled")


def latest_map(es: EmbeddingSet) -> LatentMap | None:
    return es.maps.filter(status=ArtifactStatus.READY).order_by("-created_at", "-id").first()
