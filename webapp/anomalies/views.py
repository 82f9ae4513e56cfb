"""Anomaly pages: score sets (home), the review queue, reviewed lists and their exports.

Pages are thin: the review page is driven by static/js/anomalies.js over the JSON API
(api.py); lists and exports read webapp.anomalies.services.export.
"""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.accounts.roles import has_role, role_required
from webapp.anomalies import plots
from webapp.anomalies.forms import ScoreForm
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services import export, queue, reviews, team
from webapp.anomalies.services.ranking import current_ranking
from webapp.anomalies.services.scoring import ScoringError, start_scoring
from webapp.catalog.services import atlas
from webapp.embeddings.models import ArtifactStatus
from webapp.jobs.models import Job

KEYS = [("0", "not interesting"), ("1", "dull"), ("2", "mildly"), ("3", "interesting"),
        ("4", "very"), ("5", "remarkable"), ("a", "artifact")]
REVIEWED_SHOWN = 500  # rows of the reviewed page (exports hold all)
REVIEWED_THUMB = 96   # px of a row's thumbnail, drawn from its block's sprite atlas

def home(request):
    sets = list(ScoreSet.objects.select_related("embedding_set__encoder", "job").order_by("-created_at", "-id")[:50])
    stats = {}
    for s in sets:
        if s.status == ArtifactStatus.READY:
            try:
                stats[s.pk] = reviews.review_counts(request.user, s)
            except (OSError, ValueError):  # score file missing: show the row, not a crash
                stats[s.pk] = None
    running = Job.objects.filter(kind="anomaly_scores", status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    return render(request, "anomalies/home.html", {
        "sets": sets, "stats": stats, "running": running.order_by("-created_at")[:5],
        "form": ScoreForm() if has_role(request.user, "curator") else None,
    })


@require_POST
@role_required("curator")
def score_new(request):
    form = ScoreForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Could not start scoring: " + "; ".join(
            f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("anomalies:home")
    try:
        job = start_scoring(form.cleaned_data["embedding_set"], request.user, form.cleaned_data["methods"],
                            form.cleaned_data["combine"], form.cleaned_data["name"])
    except ScoringError as exc:
        messages.error(request, str(exc))
        return redirect("anomalies:home")
    messages.info(request, f"Scoring {form.cleaned_data['embedding_set']} (job {job.pk}).")
    return redirect("jobs:detail", job_id=job.pk)


def _ready_set_or_404(score_set_id) -> ScoreSet:
    return get_object_or_404(ScoreSet.objects.select_related("embedding_set__encoder"), pk=score_set_id,
                             status=ArtifactStatus.READY)


def review(request, score_set_id):
    score_set = _ready_set_or_404(score_set_id)
    surveys = list(score_set.embedding_set.surveys.order_by("name").values("slug", "name"))
    ranking = current_ranking(request.user, score_set)
    return render(request, "anomalies/review.html", {
        "score_set": score_set, "keys": KEYS, "rank_choices": queue.rank_choices(score_set),
        "surveys": surveys, "can_review": has_role(request.user, "labeler"), "ranking": ranking,
        "first": request.GET.get("galaxy", ""), "counts": reviews.review_counts(request.user, score_set),
        "rerank_every": reviews.DEFAULT_RERANK_EVERY,
    })


def reviewed(request, score_set_id):
    score_set = _ready_set_or_404(score_set_id)
    error, rows, status = "", [], 200
    try:
        flt = export.ReviewFilter.from_query(request.GET, score_set)
        rows = export.reviewed_rows(score_set, request.user, flt)
    except export.ExportError as exc:
        error, status, flt = str(exc), 400, export.ReviewFilter()
    query = urlencode([(k, v) for k, v in request.GET.items() if v])
    kind_links = [(k or "all", "?" + urlencode({**{a: b for a, b in request.GET.items() if a != "kind"}, "kind": k}),
                   flt.kind == k) for k in ("", *export.KINDS)]
    shown = rows[:REVIEWED_SHOWN]
    # One sprite atlas per block of rows (a <tbody> each) instead of a thumbnail request per row.
    blocks = [{"rows": block, "atlas": atlas.with_sprites(block, REVIEWED_THUMB, id_key="galaxy_id")}
              for block in (shown[i:i + atlas.MAX_MEMBERS] for i in range(0, len(shown), atlas.MAX_MEMBERS))]
    return render(request, "anomalies/reviewed.html", {
        "score_set": score_set, "rows": shown, "blocks": blocks, "n_rows": len(rows), "flt": flt, "error": error,
        "kinds": export.KINDS, "methods": ["combined", *score_set.methods], "kind_links": kind_links,
        "query": query, "top_percent": f"{flt.top * 100:g}", "discovery": plots.discovery_curve(request.user, score_set),
        "histogram": plots.score_histogram(score_set), "team": team.team_consensus(score_set),
    }, status=status)


def export_list(request, score_set_id, fmt):
    """The interesting list (or any filter of reviewed galaxies) as CSV or VOTable, with RA/Dec."""
    score_set = _ready_set_or_404(score_set_id)
    try:
        flt = export.ReviewFilter.from_query(request.GET, score_set, default_kind="interesting")
    except export.ExportError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    rows = export.reviewed_rows(score_set, request.user, flt)
    stem = f"anomalies-set{score_set.pk}-{flt.kind or 'reviewed'}-{flt.scope}"
    if fmt == "csv":
        response = HttpResponse(export.to_csv(rows, score_set), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
    else:
        response = HttpResponse(export.to_votable(rows, score_set), content_type="application/x-votable+xml")
        response["Content-Disposition"] = f'attachment; filename="{stem}.vot"'
    return response
