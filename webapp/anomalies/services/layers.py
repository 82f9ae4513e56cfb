"""What this app adds to other pages: map colour layers and the galaxy-page panel.

Both are registered from AnomaliesConfig.ready().
"""
from __future__ import annotations

import numpy as np

from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.files import load_scores
from webapp.anomalies.services.reviews import history, latest_verdicts
from webapp.embeddings.models import ArtifactStatus
from webapp.embeddings.services.colours import ColourLayer


def latest_ready_set(embedding_set) -> ScoreSet | None:
    return (ScoreSet.objects.filter(embedding_set=embedding_set, status=ArtifactStatus.READY)
            .order_by("-created_at", "-id").first())


def anomaly_colour_layers(embedding_set) -> list[ColourLayer]:
    """Combined rank and each method's percentile of the newest ready score set, in the set's row order."""
    score_set = latest_ready_set(embedding_set)
    if score_set is None:
        return []
    from webapp.embeddings.services.vectors import load_embedding_set

    scores = load_scores(score_set)

    def aligned(values):
        """The column in the embedding set's row order, computed only when someone colours by it
        (colours.resolve_values): the map's colour menu lists these layers on every cold map page,
        and copying N float64 per layer there made a page O(N) (issue 14)."""
        def compute():
            es_ids = load_embedding_set(embedding_set)[0]
            if len(es_ids) == len(scores.ids) and np.array_equal(es_ids, scores.ids):   # same rows
                return np.asarray(values, dtype=np.float64)
            rows = scores.row_of.rows(es_ids)
            return np.where(rows >= 0, np.asarray(values, np.float64)[rows], np.nan)
        return compute

    meta = {"score_set": score_set.pk, "range": [0.0, 1.0], "higher": "more anomalous"}
    layers = [ColourLayer(key="anomaly", label=f"Anomaly rank (combined, {score_set.config.get('combine', 'max')})",
                          kind="numeric", values=aligned(scores.combined), group="Anomalies", meta=meta)]
    layers += [ColourLayer(key=f"anomaly:{m}", label=f"Anomaly rank: {m}", kind="numeric",
                           values=aligned(r), group="Anomalies", meta=meta) for m, r in scores.ranks.items()]
    return layers


def galaxy_scores(galaxy_id: int, survey_id: int | None = None, limit: int | None = None) -> list[tuple]:
    """[(ScoreSet, {"combined", "ranks", "scores"})] of one galaxy in the ready score sets, newest
    first: a few values read by row from each set's columnar files (no per-galaxy rows)."""
    sets = ScoreSet.objects.filter(status=ArtifactStatus.READY).select_related("embedding_set")
    if survey_id is not None:
        sets = sets.filter(embedding_set__surveys=survey_id).distinct()
    out = []
    for score_set in sets.order_by("-created_at", "-id"):
        try:
            values = load_scores(score_set).values_at(galaxy_id)
        except (OSError, ValueError):          # files pruned or lost meanwhile: skip the set
            continue
        if values is not None:
            out.append((score_set, values))
            if limit is not None and len(out) >= limit:
                break
    return out


def galaxy_panel(request, galaxy) -> dict | None:
    """The galaxy page panel: its anomaly percentiles per score set and the person's verdict."""
    rows = galaxy_scores(galaxy.pk, survey_id=galaxy.survey_id, limit=3)
    user = request.user
    verdict = latest_verdicts(user, [galaxy.pk]).get(galaxy.pk)
    past = history(user, galaxy.pk)
    if not rows and verdict is None and not past:
        return None
    sets = [{"score_set": ss, "combined": v["combined"], "top": max(100.0 * (1.0 - v["combined"]), 0.01),
             "ranks": sorted(v["ranks"].items(), key=lambda mp: -mp[1]),
             "review_url": f"/anomalies/{ss.pk}/review/?galaxy={galaxy.pk}"} for ss, v in rows]
    return {"template": "anomalies/_galaxy_panel.html",
            "context": {"sets": sets, "verdict": verdict, "history": past[:10], "n_history": len(past),
                        "galaxy": galaxy}}
