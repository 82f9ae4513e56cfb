"""JSON endpoints of the review queue (described in webapp/anomalies/openapi.py).

Viewers may read; labelers and above may review and re-rank; curators start scoring.
Anonymous requests get 401 from the login middleware, wrong roles 403 (JSON).
"""
from __future__ import annotations

import json
from functools import wraps

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.accounts.roles import has_role, role_required
from webapp.anomalies.models import AnomalyScore, ScoreSet
from webapp.anomalies.services import export, queue, reviews
from webapp.anomalies.services.ranking import current_ranking, maybe_rerank, pending_ranking, request_rerank
from webapp.anomalies.services.scoring import ScoringError, start_scoring
from webapp.catalog.models import Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet

MAX_EXCLUDE = 500
MAX_BODY = 64 * 1024


def json_errors(view):
    """Bad input -> 400 {"error"}; the services raise ValueError subclasses with the message."""
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except reviews.NothingToUndo as exc:
            return JsonResponse({"error": str(exc)}, status=409)
        except (ValueError, KeyError) as exc:
            return JsonResponse({"error": str(exc).strip("'\"")}, status=400)
    return wrapped


def _body(request) -> dict:
    if len(request.body) > MAX_BODY:
        raise ValueError("request body too large")
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("request body must be JSON") from None
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


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


# ----------------------------------------------------------------- score sets

@require_http_methods(["GET", "POST"])
@json_errors
def api_score_sets(request):
    if request.method == "POST":
        return _start_scoring(request)
    sets = ScoreSet.objects.order_by("-created_at", "-id")
    if request.GET.get("embedding_set"):
        sets = sets.filter(embedding_set_id=int(request.GET["embedding_set"]))
    return JsonResponse({"score_sets": [score_set_dict(s) for s in sets[:200]]})


@role_required("curator")
def _start_scoring(request):
    data = _body(request)
    es = EmbeddingSet.objects.filter(pk=data.get("embedding_set_id")).first()
    if es is None:
        return JsonResponse({"error": f"no embedding set {data.get('embedding_set_id')!r}"}, status=404)
    try:
        job = start_scoring(es, request.user, data.get("methods"), data.get("combine"), str(data.get("name", "")))
    except ScoringError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"job": job.as_dict()}, status=202)


# ----------------------------------------------------------------- queue and reviews

@require_GET
@json_errors
def api_queue(request, score_set_id):
    score_set = _ready_set(score_set_id)
    q = request.GET
    exclude = [int(g) for g in q.get("exclude", "").split(",") if g.strip()][:MAX_EXCLUDE]
    survey = get_object_or_404(Survey, slug=q["survey"]) if q.get("survey") else None
    first = int(q["first"]) if q.get("first") else None
    data = queue.next_candidates(request.user, score_set, n=int(q.get("n", 10)),
                                 rank_by=q.get("rank_by", "personal"), exclude=exclude, survey=survey,
                                 n_similar=min(max(int(q.get("similar", 8)), 0), 24), first=first)
    data["can_review"] = has_role(request.user, "labeler")
    return JsonResponse(data)


@require_http_methods(["GET", "POST"])
@json_errors
def api_reviews(request, score_set_id):
    """GET: reviewed galaxies matching filters; POST: record one verdict (labeler+)."""
    score_set = _ready_set(score_set_id)
    if request.method == "POST":
        return _review(request, score_set)
    flt = export.ReviewFilter.from_query(request.GET, score_set)
    rows = export.reviewed_rows(score_set, request.user, flt)
    return JsonResponse({"count": len(rows), "results": rows[:2000]})


@role_required("labeler")
def _review(request, score_set):
    data = _body(request)
    interest, artifact = reviews.parse_verdict(data)
    every = int(data.get("rerank_every", reviews.DEFAULT_RERANK_EVERY))
    if not 1 <= every <= 1000:
        raise ValueError("rerank_every must be between 1 and 1000")
    row = reviews.record_verdict(request.user, score_set, data.get("galaxy_id"), interest, artifact)
    job = maybe_rerank(request.user, score_set, every)
    return JsonResponse({"review": {"id": row.pk, "galaxy_id": row.galaxy_id, "kind": row.kind,
                                    "interest": row.interest, "at": row.created_at.isoformat()},
                         "counts": reviews.review_counts(request.user, score_set),
                         "rerank_job": job.as_dict() if job else None}, status=201)


@require_POST
@role_required("labeler")
@json_errors
def api_undo(request, score_set_id):
    score_set = _ready_set(score_set_id)
    row, now = reviews.undo_verdict(request.user, score_set, _body(request).get("galaxy_id"))
    return JsonResponse({"undo": {"id": row.pk, "galaxy_id": row.galaxy_id, "at": row.created_at.isoformat()},
                         "verdict": now.as_dict() if now else None,
                         "counts": reviews.review_counts(request.user, score_set)})


# ----------------------------------------------------------------- ranking

@require_http_methods(["GET", "POST"])
@json_errors
def api_ranking(request, score_set_id):
    score_set = _ready_set(score_set_id)
    if request.method == "POST":
        return _rerank(request, score_set)
    ranking, pending = current_ranking(request.user, score_set), pending_ranking(request.user, score_set)
    return JsonResponse({"ranking": queue.ranking_info(ranking), "pending_job": pending.job.as_dict() if pending else None})


@role_required("labeler")
def _rerank(request, score_set):
    pending = pending_ranking(request.user, score_set)
    job = pending.job if pending else request_rerank(request.user, score_set)
    return JsonResponse({"job": job.as_dict()}, status=202)


# ----------------------------------------------------------------- one galaxy

@require_GET
def api_galaxy_scores(request, galaxy_id):
    rows = (AnomalyScore.objects.filter(galaxy_id=galaxy_id, score_set__status=ArtifactStatus.READY)
            .select_related("score_set").order_by("-score_set__created_at", "-score_set_id"))
    verdict = reviews.latest_verdicts(request.user, [galaxy_id]).get(galaxy_id)
    return JsonResponse({"galaxy_id": galaxy_id,
                         "scores": [{"score_set": r.score_set_id, "combined": r.combined, "ranks": r.ranks,
                                     "scores": r.per_method} for r in rows],
                         "verdict": verdict.as_dict() if verdict else None,
                         "history": reviews.history(request.user, galaxy_id)})
