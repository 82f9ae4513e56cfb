"""JSON API of the labeling app (described in webapp/labeling/openapi.py).

Plain function views: parse input, call one service, respond.  Reads need a login
(middleware); labels, undo and enqueue need the labeler role; rounds need curator.
"""
from __future__ import annotations

import json
import logging

import numpy as np
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.roles import role_required
from webapp.catalog.models import Galaxy
from webapp.catalog.services import browse
from webapp.labeling.models import Label, Round, Task
from webapp.labeling.services import export, finetune as finetune_service, labels as label_service
from webapp.labeling.services import queue as queue_service
from webapp.labeling.services import rounds as round_service, stats
from webapp.labeling.services.consensus import agreement
from webapp.labeling.services.picking import QueueUnavailable
from webapp.labeling.services.store import predictions_for, serving_round
from webapp.middleware import DATABASE_OUTAGE_ERRORS
from webapp.labeling.services.tasks import task_dict


def json_body(request) -> dict:
    """The request's JSON object; raises ValueError with a readable message."""
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def bad(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
def api_task_list(request):
    tasks = Task.objects.prefetch_related("surveys").order_by("name")
    return JsonResponse({"tasks": [task_dict(t) for t in tasks]})


@require_POST
@role_required("labeler")
def api_enqueue(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        ids = json_body(request).get("galaxy_ids")
        if not isinstance(ids, list) or not ids:
            raise ValueError("galaxy_ids must be a non-empty list of galaxy ids")
        if len(ids) > queue_service.MAX_ENQUEUE:
            raise ValueError(f"at most {queue_service.MAX_ENQUEUE} galaxies per request, got {len(ids)}")
        count = queue_service.enqueue_galaxies(task, ids, request.user)
    except ValueError as exc:
        return bad(str(exc))
    ignored = len(set(ids)) - count
    return JsonResponse({"task_id": task.pk, "enqueued": count, "ignored": ignored,
                         "label_url": f"/tasks/{task.pk}/label/",
                         "message": f"{count} galaxies are now first in the queue of {task.name}"
                                    + (f"; {ignored} are not in this task's surveys" if ignored else "")})


# ------------------------------------------------------------------ labeling
COMPOSITE_SIZE, LARGE_SIZE, BAND_SIZE = 320, 512, 128   # px; 512 is the renderer's maximum


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()][:500]
    except ValueError:
        raise ValueError("exclude must be comma-separated galaxy ids") from None


def queue_item_dict(item, galaxy, task, prediction=None) -> dict:
    survey = galaxy.survey
    ra_hms, dec_dms = browse.sexagesimal(galaxy.ra, galaxy.dec)
    n_bands = int(survey.image_shape[1]) if survey.image_shape else len(survey.bands or [])
    bands = [{"name": (survey.bands[i] if i < len(survey.bands or []) else f"band {i}"),
              "url": browse.thumb_url(galaxy, survey, size=BAND_SIZE, band=str(i)),
              "large_url": browse.thumb_url(galaxy, survey, size=LARGE_SIZE, band=str(i))}
             for i in range(n_bands)] if n_bands > 1 else []
    data = {"galaxy_id": galaxy.pk, "source_id": galaxy.source_id, "survey": survey.slug,
            "survey_name": survey.name, "ra": galaxy.ra, "dec": galaxy.dec, "ra_hms": ra_hms, "dec_dms": dec_dms,
            "metadata": galaxy.metadata or {}, "detail_url": f"/galaxies/{galaxy.pk}/",
            "composite_url": browse.thumb_url(galaxy, survey, size=COMPOSITE_SIZE),
            "image_url": browse.thumb_url(galaxy, survey, size=LARGE_SIZE),
            "thumb_url": browse.thumb_url(galaxy, survey), "bands": bands,
            "field_arcsec": (survey.pixel_scale_arcsec * survey.image_shape[-1]
                             if survey.pixel_scale_arcsec and survey.image_shape else None),
            "reason": item.reason, "source": item.source, "strategy": item.strategy,
            "round": item.round_number, "prediction": prediction}
    return data


def _prediction(task, rnd, galaxy_ids) -> dict[int, dict]:
    if rnd is None:
        return {}
    preds = predictions_for(rnd, galaxy_ids)
    out = {}
    for i, g in enumerate(galaxy_ids):
        if task.is_classification:
            p = preds["probs"][i]
            if np.isfinite(p).all():
                k = int(np.argmax(p))
                out[int(g)] = {"class_index": k, "class": task.class_names[k], "probability": float(p[k])}
        elif np.isfinite(preds["mean"][i]):
            out[int(g)] = {"value": float(preds["mean"][i]), "sigma": float(preds["sigma"][i])}
    return out


@require_GET
@role_required("labeler")
def api_queue(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        n = min(max(int(request.GET.get("n", 10)), 1), 50)
        exclude = _int_list(request.GET.get("exclude", ""))
    except ValueError as exc:
        return bad(str(exc) if "exclude" in str(exc) else "n must be an integer between 1 and 50")
    try:
        items = queue_service.next_items(task, request.user, n, exclude=exclude)
    except QueueUnavailable as exc:
        return bad(str(exc), status=409)
    galaxies = {g.pk: g for g in Galaxy.objects.select_related("survey").only(
        *browse.GALAXY_FIELDS, *[f"survey__{f}" for f in ("id", "name", "slug", "bands", "image_shape",
                                                           "image_checksum", "pixel_scale_arcsec")])
        .filter(pk__in=[q.galaxy_id for q in items])}
    preds = _prediction(task, serving_round(task), [q.galaxy_id for q in items])
    return JsonResponse({"items": [queue_item_dict(q, galaxies[q.galaxy_id], task, preds.get(q.galaxy_id))
                                   for q in items if q.galaxy_id in galaxies],
                         "progress": stats.round_progress(task)})


@require_POST
@role_required("labeler")
def api_label(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        body = json_body(request)
        label = label_service.record_label(task, body.get("galaxy_id"), request.user, body.get("kind", "value"),
                                           body.get("class_index"), body.get("value"))
    except ValueError as exc:
        return bad(str(exc))
    if label.kind == Label.Kind.VALUE:
        _auto_round_if_available(task)
    return JsonResponse({"label_id": label.pk, "galaxy_id": label.galaxy_id, "kind": label.kind,
                         "class_index": label.class_index, "value": label.value,
                         **_counters_if_available(task, request.user)}, status=201)


def _auto_round_if_available(task) -> None:
    """Ask for an automatic round once the label is committed. Best effort against a database
    outage, like the counters: the label is stored, and the next label re-checks the round."""
    try:
        round_service.maybe_start_auto_round(task)
    except DATABASE_OUTAGE_ERRORS as exc:
        logging.getLogger(__name__).warning("label stored, round check skipped (database outage): %s", exc)


def _counters_if_available(task, user) -> dict:
    """Progress counters for a reply about a label that is already committed: if the
    database drops now, the reply still says 201 (stored) with the counters left out."""
    try:
        return {"progress": stats.round_progress(task), "user": stats.user_progress(task, user)}
    except DATABASE_OUTAGE_ERRORS:
        return {"progress": None, "user": None}


@require_POST
@role_required("labeler")
def api_undo(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        galaxy_id = json_body(request).get("galaxy_id")
        galaxy_id = int(galaxy_id) if galaxy_id is not None else None
    except (TypeError, ValueError) as exc:
        return bad(f"galaxy_id must be an integer ({exc})")
    undo = label_service.undo_last(task, request.user, galaxy_id)
    if undo is None:
        return bad("nothing to undo", status=409)
    undone = undo.undone
    return JsonResponse({"undo_id": undo.undo_id,
                         "undone": {"label_id": undone.label_id, "galaxy_id": undone.galaxy_id,
                                    "kind": undone.kind, "class_index": undone.class_index, "value": undone.value},
                         **_counters_if_available(task, request.user)})


def round_dict(r: Round) -> dict:
    return {"number": r.number, "status": r.status, "trigger": r.trigger, "model_version": r.model_version,
            "n_labels": r.n_labels, "n_train": r.n_train, "n_val": r.n_val, "metrics": r.metrics,
            "transfer": r.transfer, "strategy": r.strategy, "seconds": r.seconds, "error": r.error,
            "job_id": r.job_id, "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None}


def api_rounds(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    if request.method == "POST":
        return _start_round(request, task)
    if request.method != "GET":
        return bad("use GET or POST", status=405)
    return JsonResponse({"rounds": [round_dict(r) for r in task.rounds.order_by("-number")]})


@role_required("curator")
def _start_round(request, task):
    try:
        rnd = round_service.start_round(task, request.user)
    except round_service.RoundError as exc:
        return bad(str(exc), status=409)
    return JsonResponse({"round": round_dict(rnd), "job_url": f"/api/jobs/{rnd.job_id}/"}, status=202)


@require_GET
def api_task_detail(request, task_id):
    task = get_object_or_404(Task.objects.prefetch_related("surveys"), pk=task_id)
    rnd = serving_round(task)
    return JsonResponse({**task_dict(task), "progress": stats.round_progress(task), "agreement": agreement(task),
                         "serving_round": round_dict(rnd) if rnd else None})


def _paged_table(request, table):
    try:
        per = min(max(int(request.GET.get("per", 500)), 1), 5000)
        page_no = max(int(request.GET.get("page", 1)), 1)
    except ValueError:
        return bad("page and per must be integers")
    pages = Paginator(range(len(table)), per)
    if page_no > max(pages.num_pages, 1):
        return bad(f"page {page_no} does not exist (there are {pages.num_pages})", status=404)
    start = (page_no - 1) * per
    return JsonResponse({"count": len(table), "page": page_no, "num_pages": pages.num_pages, "per_page": per,
                         "columns": table.colnames, "results": export.table_rows(table, start, start + per)})


@require_GET
def api_catalogue(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    return _paged_table(request, export.catalogue_table(task))


@require_GET
def api_labels(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    return _paged_table(request, export.labels_table(task))


@require_POST
@role_required("curator")
def api_finetune(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        job = finetune_service.start_finetune(task, request.user, json_body(request).get("config"))
    except ValueError as exc:          # FinetuneError, or a body that is not JSON
        return bad(str(exc), status=409 if isinstance(exc, finetune_service.FinetuneError) else 400)
    return JsonResponse({"job_id": job.pk, "job_url": f"/api/jobs/{job.pk}/",
                         "message": "fine-tune -> embed -> switch jobs queued"}, status=202)
