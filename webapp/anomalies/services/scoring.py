"""The `anomaly_scores` job: unsupervised scores for every galaxy of an EmbeddingSet.

Params: {"embedding_set_id": int, "methods": [..] (optional), "combine": "max"|"mean" (optional),
"name": str (optional)}.  Result: {"score_set_id", "n", "methods", "seconds"}.

Re-runs are safe: a retried job (worker lost) finds the ScoreSet it created, throws away
any half-written rows and writes everything again; the set is marked ready only after the
score file and every row exist.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from django.db import transaction

from ml.anomaly import METHODS, AnomalyConfig, combine_scores, rank_normalise, score_all
from ml.atomic import save_npz_atomic
from ml.progress import span
from webapp.anomalies.models import AnomalyScore, ScoreSet
from webapp.anomalies.services.files import new_file
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services.vectors import load_embedding_set

log = logging.getLogger(__name__)
ROW_BATCH = 2000  # AnomalyScore rows per bulk insert (bounded memory, visible progress)


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
    AnomalyScore.objects.filter(score_set=score_set).delete()  # a retried job starts clean

    t0 = time.perf_counter()
    x = np.asarray(vectors, dtype=np.float32)                               # (N, D)
    scores = score_all(x, cfg, progress=span(progress, 0.0, 0.6))
    seconds = time.perf_counter() - t0
    for name, values in scores.items():
        if not np.isfinite(values).all():  # a degenerate embedding must not poison the ranks
            log.warning("score %s has %d non-finite values; treating them as least anomalous",
                        name, int((~np.isfinite(values)).sum()))
            scores[name] = np.nan_to_num(values, nan=-np.inf, posinf=np.finfo(np.float32).max)
    ranks = {m: rank_normalise(s).astype(np.float32) for m, s in scores.items()}
    combined = combine_scores(scores, cfg.combine).astype(np.float32)

    path, relative = new_file(f"scores{score_set.pk}", "scores.npz")
    arrays = {"ids": np.asarray(ids, dtype=np.int64), "combined": combined}
    for m in scores:
        arrays[f"score_{m}"], arrays[f"rank_{m}"] = scores[m].astype(np.float32), ranks[m]
    checksum = save_npz_atomic(path, **arrays)
    _write_rows(score_set, arrays["ids"], combined, scores, ranks, span(progress, 0.6, 1.0))
    with transaction.atomic():
        score_set.scores_path, score_set.checksum = relative, checksum
        score_set.n, score_set.seconds = len(ids), round(seconds, 3)
        score_set.config = dataclasses.asdict(cfg)
        score_set.status = ArtifactStatus.READY
        score_set.save(update_fields=["scores_path", "checksum", "n", "seconds", "config", "status"])
    progress(1, 1, f"scored {len(ids)} galaxies with {', '.join(scores)}")
    return score_set


def _write_rows(score_set, ids, combined, scores, ranks, progress) -> None:
    n = len(ids)
    for start in range(0, n, ROW_BATCH):
        stop = min(start + ROW_BATCH, n)
        AnomalyScore.objects.bulk_create([
            AnomalyScore(score_set=score_set, galaxy_id=int(ids[i]), combined=float(combined[i]),
                         per_method={m: _finite(scores[m][i]) for m in scores},
                         ranks={m: round(float(ranks[m][i]), 6) for m in ranks})
            for i in range(start, stop)])
        progress(stop, n, f"stored {stop}/{n} scores")


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
