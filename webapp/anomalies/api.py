"""Anomaly review JSON API: score sets, the review queue, verdicts and undo, ranking, one galaxy.

Viewers read; labelers and above review and re-rank; curators start scoring.
"""
from __future__ import annotations

from typing import Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from webapp.accounts.roles import has_role
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services import export, queue, reviews
from webapp.anomalies.services.ranking import current_ranking, maybe_rerank, pending_ranking, request_rerank
from webapp.anomalies.services.scoring import start_scoring
from webapp.apikit import Error, Out, error, id_list, role
from webapp.catalog.models import Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.jobs.api import JobOut

router = Router()
MAX_EXCLUDE = 500


class ScoreSetOut(Out):
    id: int
    name: str
    embedding_set: int
    status: str
    n: int | None = None
    methods: list[str] | None = None
    combine: str | None = None
    config: dict | None = None
    seconds: float | None = None
    created_at: str
    job: int | None = None
    review_url: str
    queue_url: str


class ScoreSetList(Out):
    score_sets: list[ScoreSetOut]


class JobReply(Out):
    job: JobOut


class ScoringIn(Schema):
    embedding_set_id: int
    methods: list[str] | None = Field(None, description="iforest, knn, lof, gmm (default: all)")
    combine: str | None = Field(None, description="how the methods' ranks are combined")
    name: str = ""


class ReviewQueueQuery(Schema):
    n: int = Field(10, ge=1, le=queue.MAX_BATCH)
    rank_by: str = Field("personal", description="personal, combined or a method name")
    exclude: str = Field("", description="comma-separated galaxy ids the client already holds")
    survey: str | None = Field(None, description="only galaxies of this survey (slug)")
    similar: int = Field(8, ge=0, le=24, description="scored neighbours shown with each candidate")
    first: int | None = Field(None, description="put this galaxy first")


class Candidates(Out):
    """The next candidates, best first, with the reason each is shown."""
    can_review: bool


class ReviewFilterQuery(Schema):
    scope: Literal["mine", "all"] = "mine"
    kind: Literal["interesting", "unsure", "boring", "artifact"] | None = None
    min: float | None = Field(None, ge=0, le=5)
    max: float | None = Field(None, ge=0, le=5)
    method: str | None = Field(None, description="combined or a method name")
    top: float | None = Field(None, description="percent: the method's top N %", ge=0.01, le=100)


class Reviewed(Out):
    count: int
    results: list[dict] = Field(description="the first 2000 reviewed galaxies with scores and verdict")


class ReviewIn(Schema):
    galaxy_id: int
    interest: int | None = Field(None, ge=0, le=reviews.MAX_INTEREST, description="0 boring .. 5 fascinating")
    artifact: bool = Field(False, description="instead of an interest score")
    rerank_every: int = Field(reviews.DEFAULT_RERANK_EVERY, ge=1, le=1000,
                              description="re-rank after this many new verdicts")


class ReviewOut(Out):
    review: dict
    counts: dict
    rerank_job: JobOut | None = None


class VerdictUndoIn(Schema):
    galaxy_id: int


class VerdictUndoOut(Out):
    undo: dict
    verdict: dict | None = Field(None, description="the verdict that counts now")
    counts: dict


class RankingOut(Out):
    ranking: dict | None = None
    pending_job: JobOut | None = None


class GalaxyScores(Out):
    galaxy_id: int
    scores: list[dict]
    verdict: dict | None = None
    history: list[dict]


class ScoreColumnsQuery(Schema):
    offset: int = Field(0, ge=0, le=10**9)
    limit: int = Field(10_000, ge=1, le=export.MAX_SCORE_ROWS)


class ScoreColumns(Out):
    score_set: int
    total: int
    offset: int
    count: int
    next_offset: int | None = None
    columns: dict[str, list] = Field(description="galaxy_id, combined, score_<method>, rank_<method>: "
                                     "equal-length lists in the embedding set's row order")


def _ready_set(score_set_id) -> ScoreSet:
    score_set = get_object_or_404(ScoreSet.objects.select_related("embedding_set"), pk=score_set_id)
    if score_set.status != ArtifactStatus.READY:
        raise ValueError(f"score set {score_set.pk} is {score_set.status}, not ready")
    return score_set


def score_set_dict(s: ScoreSet) -> dict:
    return {"id": s.pk, "name": str(s), "embedding_set": s.embedding_set_id, "status": s.status, "n": s.n,
            "methods": s.methods, "combine": s.config.get("combine"), "config": s.config, "seconds": s.seconds,
            "created_at": s.created_at.isoformat(), "job": s.job_id,
            "review_url": f"/anomalies/{s.pk}/review/", "queue_url": f"/api/anomalies/score-sets/{s.pk}/queue/"}


SETS = "/anomalies/score-sets/"


@router.get(SETS, response=ScoreSetList, url_name="api_score_sets", summary="Anomaly score sets, newest first")
def api_score_sets(request, embedding_set: int | None = None):
    sets = ScoreSet.objects.order_by("-created_at", "-id")
    if embedding_set:
        sets = sets.filter(embedding_set_id=embedding_set)
    return {"score_sets": [score_set_dict(s) for s in sets[:200]]}


@router.post(SETS, response={202: JobReply, 400: Error, 403: Error, 404: Error}, auth=role("curator"),
             summary="Start an anomaly_scores job on an embedding set (curator)")
def api_start_scoring(request, body: ScoringIn):
    es = EmbeddingSet.objects.filter(pk=body.embedding_set_id).first()
    if es is None:
        return error(404, f"no embedding set {body.embedding_set_id!r}")
    return Status(202, {"job": start_scoring(es, request.user, body.methods, body.combine, body.name).as_dict()})


@router.get(SETS + "{int:score_set_id}/queue/", response={200: Candidates, 400: Error, 404: Error},
            url_name="api_queue", summary="The next unreviewed candidates for the logged-in person, best first")
def api_queue(request, score_set_id: int, q: Query[ReviewQueueQuery]):
    score_set = _ready_set(score_set_id)
    survey = get_object_or_404(Survey, slug=q.survey) if q.survey else None
    data = queue.next_candidates(request.user, score_set, n=q.n, rank_by=q.rank_by,
                                 exclude=id_list(q.exclude, "exclude")[:MAX_EXCLUDE], survey=survey,
                                 n_similar=q.similar, first=q.first)
    data["can_review"] = has_role(request.user, "labeler")
    return data


@router.get(SETS + "{int:score_set_id}/scores/", response={200: ScoreColumns, 400: Error, 404: Error},
            url_name="api_scores", summary="Every galaxy's anomaly scores and ranks, as columns (paged by offset)")
def api_scores(request, score_set_id: int, q: Query[ScoreColumnsQuery]):
    return export.score_columns(_ready_set(score_set_id), q.offset, q.limit)


@router.get(SETS + "{int:score_set_id}/reviews/", response={200: Reviewed, 400: Error, 404: Error},
            url_name="api_reviews", summary="Reviewed galaxies of the set, filtered")
def api_reviews(request, score_set_id: int, q: Query[ReviewFilterQuery]):
    score_set = _ready_set(score_set_id)
    flt = export.ReviewFilter.from_query(q.dict(exclude_none=True), score_set)
    rows = export.reviewed_rows(score_set, request.user, flt)
    return {"count": len(rows), "results": rows[:2000]}


@router.post(SETS + "{int:score_set_id}/reviews/", response={201: ReviewOut, 400: Error, 403: Error, 404: Error},
             auth=role("labeler"), summary="Record a verdict: interest 0-5 or artifact; append-only (labeler)")
def api_review(request, score_set_id: int, body: ReviewIn):
    score_set = _ready_set(score_set_id)
    interest, artifact = reviews.parse_verdict(body.dict(exclude_unset=True))
    row = reviews.record_verdict(request.user, score_set, body.galaxy_id, interest, artifact)
    job = maybe_rerank(request.user, score_set, body.rerank_every)
    return Status(201, {"review": {"id": row.pk, "galaxy_id": row.galaxy_id, "kind": row.kind,
                                   "interest": row.interest, "at": row.created_at.isoformat()},
                       "counts": reviews.review_counts(request.user, score_set),
                       "rerank_job": job.as_dict() if job else None})


@router.post(SETS + "{int:score_set_id}/undo/", response={200: VerdictUndoOut, 400: Error, 403: Error, 404: Error,
                                                           409: Error},
             auth=role("labeler"), url_name="api_undo",
             summary="Retract the person's current verdict on a galaxy (labeler); appends an undo row")
def api_undo(request, score_set_id: int, body: VerdictUndoIn):
    score_set = _ready_set(score_set_id)
    row, now = reviews.undo_verdict(request.user, score_set, body.galaxy_id)
    return {"undo": {"id": row.pk, "galaxy_id": row.galaxy_id, "at": row.created_at.isoformat()},
            "verdict": now.as_dict() if now else None,
            "counts": reviews.review_counts(request.user, score_set)}


@router.get(SETS + "{int:score_set_id}/ranking/", response={200: RankingOut, 400: Error, 404: Error},
            url_name="api_ranking", summary="The person's current personal ranking and any re-rank in progress")
def api_ranking(request, score_set_id: int):
    score_set = _ready_set(score_set_id)
    ranking, pending = current_ranking(request.user, score_set), pending_ranking(request.user, score_set)
    return {"ranking": queue.ranking_info(ranking), "pending_job": pending.job.as_dict() if pending else None}


@router.post(SETS + "{int:score_set_id}/ranking/", response={202: JobReply, 400: Error, 403: Error, 404: Error},
             auth=role("labeler"), summary="Re-rank now (labeler); returns the running job if one exists")
def api_rerank(request, score_set_id: int):
    score_set = _ready_set(score_set_id)
    pending = pending_ranking(request.user, score_set)
    return Status(202, {"job": (pending.job if pending else request_rerank(request.user, score_set)).as_dict()})


@router.get("/anomalies/galaxies/{int:galaxy_id}/", response=GalaxyScores, url_name="api_galaxy_scores",
            summary="A galaxy's anomaly scores in every ready score set, and the person's verdict and history")
def api_galaxy_scores(request, galaxy_id: int):
    from webapp.anomalies.services.layers import galaxy_scores
    rows = galaxy_scores(galaxy_id)
    verdict = reviews.latest_verdicts(request.user, [galaxy_id]).get(galaxy_id)
    return {"galaxy_id": galaxy_id,
            "scores": [{"score_set": ss.pk, "combined": v["combined"], "ranks": v["ranks"],
                        "scores": v["scores"]} for ss, v in rows],
            "verdict": verdict.as_dict() if verdict else None,
            "history": reviews.history(request.user, galaxy_id)}
