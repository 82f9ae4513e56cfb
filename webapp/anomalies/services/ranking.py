"""The `anomaly_rerank` job: a person's queue, re-ordered by what they found interesting.

Fits ml.ranking.PersonalRanker (by default kernel regression of the person's 0-5 scores
over their nearest scored galaxies in the embedding, or a random forest when the score
set's config asks for it; optimistic UCB acquisition; artifact look-alike penalty) on
top of the score set's combined anomaly rank.  Params: {"ranking_id"} (a PersonalRanking row created by
`request_rerank`).  Result: {"ranking_id", "n_reviews", "seconds"}.  The ranking file
holds the full order plus explanations (nearest scored galaxies) for its first
EXPLAIN_TOP candidates, which is all a person reaches before the next re-rank.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from django.db import transaction

from ml.anomaly import rank_normalise
from ml.ranking import FeedbackConfig, PersonalRanker
from ml.atomic import save_npy_atomic, save_npz_atomic
from ml.topk import top_k_stream
from webapp.anomalies.models import PersonalRanking, Review, ScoreSet
from webapp.anomalies.services.files import RANKING_COLUMNS, load_scores, new_file
from webapp.anomalies.services.reviews import DEFAULT_RERANK_EVERY, latest_verdicts, lock_user
from webapp.embeddings.models import ArtifactStatus, failed_on_error
from webapp.embeddings.services.vectors import load_embedding_set

EXPLAIN_TOP = 2000  # candidates whose "why" is stored (a person re-ranks long before reaching them)
EXPLAIN_K = 5       # nearest scored galaxies kept per candidate
RERANK_POOL = 200_000  # above this many galaxies a re-rank scores only the RERANK_POOL most anomalous
                       # (plus the person's reviewed ones): its memory and time stop growing with N


def rerank_pool(combined: np.ndarray, reviewed_rows: np.ndarray, size: int | None = None) -> np.ndarray | None:
    """Sorted rows a re-rank scores: None (every row) up to ``size``, else the ``size`` highest
    combined scores (one streaming pass, ml.topk) and the reviewed rows.

    Why this loses nothing a person sees: the personal value is anomaly_rank^p x factor, and the
    factor is bounded, so a galaxy outside the pool can only pass a pool galaxy whose factor was
    pushed down (near things scored dull).  The queue shows the head of the ranking, and the
    person's next re-rank comes long before the first RERANK_POOL candidates are used up."""
    size = RERANK_POOL if size is None else size
    if len(combined) <= size:
        return None
    return np.union1d(top_k_stream(combined, size), np.asarray(reviewed_rows, dtype=np.int64))


def set_neighbourhood(embedding_set, vectors, cfg: FeedbackConfig) -> float | None:
    """The set-wide neighbourhood scale (ml.ranking.neighbourhood_scale's median distance to the
    trust_k-th neighbour) measured with the set's saved search index, or None when there is
    none (the ranker then measures it within the pool)."""
    from webapp.embeddings.services.search import SearchError, get_index
    try:
        index = get_index(embedding_set)
    except SearchError:
        return None
    if index.cfg.metric != cfg.metric:
        return None
    sample = np.sort(np.random.default_rng(cfg.seed).choice(len(vectors), min(cfg.trust_sample, len(vectors)),
                                                            replace=False))
    dist, _ = index.query(np.asarray(vectors[sample], dtype=np.float32), cfg.trust_k + 1)   # self first
    return float(np.median(dist[:, -1]))


def feedback_config(score_set: ScoreSet) -> FeedbackConfig:
    """FeedbackConfig defaults, overridden by score_set.config["feedback"] (unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(FeedbackConfig)}
    overrides = {k: v for k, v in (score_set.config.get("feedback") or {}).items() if k in known}
    return FeedbackConfig(**overrides)


def request_rerank(user, score_set: ScoreSet):
    """Create a PersonalRanking row and its job (on commit); returns the Job."""
    from webapp.jobs.services import create_job

    if score_set.status != ArtifactStatus.READY:
        raise ValueError(f"score set {score_set.pk} is {score_set.status}, not ready")
    with transaction.atomic():
        ranking = PersonalRanking.objects.create(user=user, score_set=score_set,
                                                 config=dataclasses.asdict(feedback_config(score_set)))
        job = create_job("anomaly_rerank", {"ranking_id": ranking.pk}, user=user,
                         title=f"Re-rank anomalies for {user.username} (set {score_set.pk})")
        PersonalRanking.objects.filter(pk=ranking.pk).update(job=job)
    return job


def maybe_rerank(user, score_set: ScoreSet, every: int = DEFAULT_RERANK_EVERY):
    """Start a personal re-rank once `every` reviews arrived since the last one; returns the Job or None.

    The user's row is locked while deciding, so two parallel reviews cannot both start a
    job; a job already queued or running for this person and set is never doubled.
    """
    with transaction.atomic():
        lock_user(user)
        last = (PersonalRanking.objects.filter(user=user, score_set=score_set).select_related("job")
                .order_by("-created_at", "-id").first())
        if last is not None and last.status == "building" and last.job is not None and not last.job.is_finished:
            return None
        since = Review.objects.filter(user=user, score_set=score_set)
        if last is not None:
            since = since.filter(created_at__gt=last.created_at)
        if since.count() < every:
            return None
        return request_rerank(user, score_set)


def current_ranking(user, score_set: ScoreSet) -> PersonalRanking | None:
    """The newest ready ranking of this person on this set."""
    return (PersonalRanking.objects.filter(user=user, score_set=score_set, status=ArtifactStatus.READY)
            .order_by("-created_at", "-id").first())


def pending_ranking(user, score_set: ScoreSet) -> PersonalRanking | None:
    """A ranking still being computed (its job not finished), if any."""
    last = (PersonalRanking.objects.filter(user=user, score_set=score_set).select_related("job")
            .order_by("-created_at", "-id").first())
    if last and last.status == ArtifactStatus.BUILDING and last.job and not last.job.is_finished:
        return last
    return None


def run_rerank_job(job, progress) -> dict:
    ranking = (PersonalRanking.objects.select_related("user", "score_set__embedding_set")
               .filter(pk=job.params.get("ranking_id")).first())
    if ranking is None:
        return {"skipped": "the ranking row no longer exists"}
    with failed_on_error(ranking, errors=BaseException):
        compute_ranking(ranking, progress)
    return {"ranking_id": ranking.pk, "n_reviews": ranking.n_reviews, "seconds": ranking.seconds}


def compute_ranking(ranking: PersonalRanking, progress=None) -> PersonalRanking:
    """Fit on the person's current verdicts, write the ranking file, mark the row ready."""
    progress = progress or (lambda *a: None)
    t0 = time.perf_counter()
    score_set = ranking.score_set
    scores = load_scores(score_set)
    es_ids, vectors, _ = load_embedding_set(score_set.embedding_set)
    if len(es_ids) != len(scores.ids) or not np.array_equal(es_ids, scores.ids):
        raise ValueError(f"score set {score_set.pk} does not match its embedding set's rows")
    progress(0, 4, "reading your verdicts")
    rows, interest, artifact = verdict_arrays(ranking.user, scores.row_of)
    cfg = feedback_config(score_set)
    pool = rerank_pool(scores.combined, rows)
    progress(1, 4, f"fitting on {len(rows)} verdicts" + (f" (the {len(pool):,} most anomalous galaxies and "
                                                           "your reviewed ones)" if pool is not None else ""))
    if pool is None:
        ranker = PersonalRanker(np.asarray(vectors, dtype=np.float32), scores.combined, cfg)
        value, why = ranker.rank(rows, interest, artifact)                # (N,)
        pool_rows = np.arange(len(value))
    else:
        # Set-wide percentiles of the pool's rows, and the set-wide neighbourhood scale: the
        # same quantities the unpooled ranker would use, so only which galaxies compete changes.
        ranker = PersonalRanker(np.asarray(vectors[pool], dtype=np.float32), rank_normalise(scores.combined)[pool],
                                cfg, anomaly_is_rank=True,
                                neighbourhood=set_neighbourhood(score_set.embedding_set, vectors, cfg))
        value, why = ranker.rank(np.searchsorted(pool, rows), interest, artifact)   # (P,)
        pool_rows = pool
    progress(3, 4, "writing the ranking")
    local = np.argsort(-value, kind="stable")
    local = local[np.isfinite(value[local])]                               # scored galaxies left out
    order_ids = scores.ids[pool_rows[local]]
    if pool is not None:   # then everyone else, in the set's combined order (rerank_pool says why that is safe)
        rest = np.asarray(scores.order("combined"))
        order_ids = np.concatenate([order_ids, rest[~np.isin(rest, scores.ids[pool])]])
    top = local[:EXPLAIN_TOP]
    k = min(EXPLAIN_K, why.neighbour_ids.shape[1])
    arrays = {
        "order": order_ids, "value": value[local].astype(np.float32),
        "why_neighbours": (scores.ids[pool_rows[why.neighbour_ids[top, :k]]] if k
                           else np.zeros((len(top), 0), np.int64)),
        "why_scores": why.neighbour_scores[top, :k].astype(np.float32),
        "why_artifact": why.neighbour_artifact[top, :k],
        "why_distances": why.neighbour_distances[top, :k].astype(np.float32),
        "why_predicted": why.predicted_score[top].astype(np.float32),
        "why_uncertainty": why.uncertainty[top].astype(np.float32),
        "why_penalty": why.artifact_penalty[top].astype(np.float32),
    }
    path, relative = new_file(f"rank{ranking.pk}", "ranking.npz")
    # order and value (M,) as .npy files that readers memory-map (files.load_ranking): np.load of
    # an .npz copies every array whole, and the review queue's first request then held 12 bytes
    # per galaxy of the set (issue 14: no request allocates O(N)); the .npz (bounded why_*) last
    for name in RANKING_COLUMNS:
        save_npy_atomic(path.parent / f"{name}.npy", arrays.pop(name))
    save_npz_atomic(path, **arrays)
    ranking.ranking_path, ranking.n_reviews = relative, len(rows)
    ranking.seconds = round(time.perf_counter() - t0, 3)
    ranking.config = dataclasses.asdict(cfg)
    ranking.status = ArtifactStatus.READY
    ranking.save(update_fields=["ranking_path", "n_reviews", "seconds", "config", "status"])
    from webapp.anomalies.services.retention import prune_rankings
    prune_rankings(ranking.user, score_set)
    progress(4, 4, f"ranked {len(order_ids):,} candidates from {len(rows)} verdicts")
    return ranking


def verdict_arrays(user, row_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The person's current verdicts on galaxies of this set: rows (M,), interest (M,), artifact (M,).

    ``row_of``: the set's ml.idindex.IdIndex.  An artifact tag without a score counts as
    interest 0 (ml.ranking treats it so anyway)."""
    latest = latest_verdicts(user)
    found = row_of.rows(np.fromiter(latest.keys(), dtype=np.int64, count=len(latest)))
    verdicts = [(int(r), v) for r, v in zip(found, latest.values()) if r >= 0]
    rows = np.array([r for r, _ in verdicts], dtype=np.int64)
    interest = np.array([0.0 if v.interest is None else float(v.interest) for _, v in verdicts])
    artifact = np.array([v.artifact for _, v in verdicts], dtype=bool)
    return rows, interest, artifact


def explanation(arrays: dict, position: int) -> dict | None:
    """JSON "why" for the candidate at `position` of a ranking's order (None past EXPLAIN_TOP)."""
    if position >= len(arrays["why_predicted"]):
        return None
    return {
        "predicted_interest": round(float(arrays["why_predicted"][position]), 2),
        "uncertainty": _round(arrays["why_uncertainty"][position]),
        "artifact_penalty": round(float(arrays["why_penalty"][position]), 3),
        "neighbours": [{"id": int(g), "interest": float(s), "artifact": bool(a), "distance": round(float(d), 4)}
                       for g, s, a, d in zip(arrays["why_neighbours"][position], arrays["why_scores"][position],
                                             arrays["why_artifact"][position], arrays["why_distances"][position])],
    }


def _round(value) -> float | None:
    value = float(value)
    return round(value, 2) if np.isfinite(value) else None
