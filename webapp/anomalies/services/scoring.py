"""The `anomaly_scores` job: unsupervised scores for every galaxy of an EmbeddingSet.

Params: {"embedding_set_id": int, "methods": [..] (optional), "combine": "max"|"mean" (optional),
"name": str (optional)}.  Result: {"score_set_id", "n", "methods", "seconds"}.

Re-runs are safe: a retried job (worker lost) finds the ScoreSet it created and writes a
fresh score directory (services/files.py: columnar .npy addressed by embedding-set row,
plus precomputed orders for the sorted lists); the set is marked ready only after every
file exists.  There are no per-galaxy score rows.  Afterwards score sets beyond the last
settings.KEEP_ROUNDS of the embedding set are deleted (retention.prune_score_sets).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from django.db import transaction

from ml.anomaly import METHODS, AnomalyConfig, combine_scores, rank_normalise, score_all
from ml.progress import span
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.files import new_file, write_scores
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services.vectors import load_embedding_set

log = logging.getLogger(__name__)


class ScoringError(ValueError):
    """The request cannot be scored (unknown method, set not ready, ...); the message says why."""


def anomaly_config(methods=None, combine: str | None = None, **overrides) -> AnomalyConfig:
    """An AnomalyConfig from user input, with clear errors for unknown methods."""
    cfg = AnomalyConfig(**overrides)
    if methods:
        methods = tuple(dict.fromkeys(str(m) for m in methods))
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise ScoringError(f"unknown anomaly methods {unknown}; choose from {list(METHODS)}")
        cfg.methods = methods
    if combine:
        if combine not in ("max", "mean"):
            raise ScoringError(f"combine must be 'max' or 'mean', not {combine!r}")
        cfg.combine = combine
    return cfg


def start_scoring(embedding_set: EmbeddingSet, user=None, methods=None, combine=None, name: str = ""):
    """Queue an anomaly_scores job (curator action); returns the Job."""
    from webapp.jobs.services import create_job

    if embedding_set.status != ArtifactStatus.READY:
        raise ScoringError(f"embedding set {embedding_set.pk} is {embedding_set.status}, not ready")
    cfg = anomaly_config(methods, combine)
    params = {"embedding_set_id": embedding_set.pk, "methods": list(cfg.methods), "combine": cfg.combine}
    if name:
        params["name"] = name[:200]
    return create_job("anomaly_scores", params, user=user, title=f"Score anomalies: {embedding_set}")


def saved_index(es: EmbeddingSet, cfg: AnomalyConfig):
    """The set's built search index when the kNN scores can use it (same metric, every row): the
    anomaly job then queries it in blocks instead of building a second one (minutes at 10^7).
    None otherwise (score_all builds its own), and above cfg.knn_reference_max rows, where the
    scores search a reference sample instead (ml.anomaly)."""
    from webapp.embeddings.services.search import get_index
    if not ({"knn", "lof"} & set(cfg.methods)) or es.index_status != ArtifactStatus.READY or not es.index_path:
        return None
    if es.n > cfg.knn_reference_max:
        return None
    try:
        index = get_index(es)
    except Exception:  # noqa: BLE001 - a missing or unreadable index only costs a rebuild here
        log.warning("could not load the search index of set %s; building one for the scores", es.pk, exc_info=True)
        return None
    return index if index.cfg.metric == cfg.metric and index.ntotal == es.n else None


def run_score_job(job, progress) -> dict:
    params = job.params
    es = EmbeddingSet.objects.filter(pk=params.get("embedding_set_id")).first()
    if es is None:
        raise ScoringError(f"embedding set {params.get('embedding_set_id')} no longer exists")
    cfg = anomaly_config(params.get("methods"), params.get("combine"))
    score_set = (ScoreSet.objects.filter(job=job).first()
                 or ScoreSet.objects.create(embedding_set=es, job=job, config=dataclasses.asdict(cfg),
                                            name=params.get("name", "")))
    score_embedding_set(score_set, cfg, progress)
    return {"score_set_id": score_set.pk, "n": score_set.n, "methods": list(cfg.methods),
            "seconds": score_set.seconds}


def score_embedding_set(score_set: ScoreSet, cfg: AnomalyConfig, progress=None) -> ScoreSet:
    """Compute, store and publish the scores of score_set.embedding_set (see module doc)."""
    progress = progress or (lambda *a: None)
    es = score_set.embedding_set
    ids, vectors, _ = load_embedding_set(es)
    if len(ids) < 3:
        raise ScoringError(f"embedding set {es.pk} has {len(ids)} galaxies; anomaly scores need at least 3")
    ScoreSet.objects.filter(pk=score_set.pk).update(status=ArtifactStatus.BUILDING)

    t0 = time.perf_counter()
    x = np.asarray(vectors, dtype=np.float32)                               # (N, D)
    scores = score_all(x, cfg, progress=span(progress, 0.0, 0.9), index=saved_index(es, cfg))
    seconds = time.perf_counter() - t0
    for name, values in scores.items():
        if not np.isfinite(values).all():  # a degenerate embedding must not poison the ranks
            log.warning("score %s has %d non-finite values; treating them as least anomalous",
                        name, int((~np.isfinite(values)).sum()))
            scores[name] = np.nan_to_num(values, nan=-np.inf, posinf=np.finfo(np.float32).max)
    ranks = {m: rank_normalise(s).astype(np.float32) for m, s in scores.items()}
    combined = combine_scores(scores, cfg.combine).astype(np.float32)

    progress(0.9, 1.0, "writing score files")
    directory, relative = new_file(f"scores{score_set.pk}", "scores")
    checksum = write_scores(directory, es.ids_path, combined, scores, ranks, ids)
    previous = ScoreSet.objects.filter(pk=score_set.pk).values_list("scores_path", flat=True).first() or ""
    with transaction.atomic():
        score_set.scores_path, score_set.checksum = relative, checksum
        score_set.n, score_set.seconds = len(ids), round(seconds, 3)
        score_set.config = dataclasses.asdict(cfg)
        score_set.status = ArtifactStatus.READY
        score_set.save(update_fields=["scores_path", "checksum", "n", "seconds", "config", "status"])
    from webapp.anomalies.services.retention import prune_score_sets, remove_artifact_dir
    if previous and previous != relative:                 # a retried job: drop the first attempt's files
        remove_artifact_dir(previous, f"scores{score_set.pk}-")
    prune_score_sets(es)
    progress(1, 1, f"scored {len(ids)} galaxies with {', '.join(scores)}")
    return score_set
