"""Labeling JSON API: tasks, the labeller's queue, labels and undo, rounds, fine-tuning, tables.

Reads need a login; labels, undo, the queue and enqueue need the labeler role; rounds and
fine-tuning need curator.
"""
from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from webapp.accounts.roles import has_role
from webapp.apikit import Error, Out, error, id_list, role
from webapp.catalog.models import Galaxy
from webapp.catalog.services import browse, static_thumbs
from webapp.labeling.models import Label, Round, Task
from webapp.labeling.services import export, finetune as finetune_service, label_import, labels as label_service
from webapp.labeling.services import prerender, queue as queue_service
from webapp.labeling.services import rounds as round_service, stats
from webapp.labeling.services.consensus import agreement
from webapp.labeling.services.store import predictions_for, serving_round
from webapp.labeling.services.tasks import task_dict
from webapp.middleware import DATABASE_OUTAGE_ERRORS

router = Router()
TASK = "/tasks/{int:task_id}"


# ------------------------------------------------------------------ schemas

class TaskOut(Out):
    id: int
    name: str
    kind: str = Field(description="classification or regression")
    classes: list[dict] = Field(description="index, name and key of each class")
    allow_unsure: bool
    strategy: str
    surveys: list[str]
    embedding_set_id: int | None = None
    url: str
    label_url: str
    target: str | None = Field(None, description="regression: the quantity")
    unit: str | None = None
    range: list[float | None] | None = None


class TaskList(Out):
    tasks: list[TaskOut]


class RoundOut(Out):
    number: int
    status: str = Field(description="building, ready or failed")
    trigger: str = Field(description="manual or auto")
    model_version: str | None = None
    n_labels: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    metrics: dict | None = Field(None, description="accuracy, balanced_accuracy, macro_f1, ece, confusion, "
                                 "reliability (classification) or rmse, coverage_90 (regression)")
    transfer: dict | None = Field(None, description="per target survey: accuracy before/after adaptation")
    strategy: str | None = None
    seconds: float | None = None
    error: str | None = None
    job_id: int | None = None
    created_at: str
    finished_at: str | None = None


class TaskDetail(TaskOut):
    progress: dict
    agreement: dict = Field(description="vote fractions, entropy, Fleiss' kappa")
    serving_round: RoundOut | None = None


class RoundList(Out):
    rounds: list[RoundOut]


class RoundStarted(Out):
    round: RoundOut
    job_url: str


class EnqueueIn(Schema):
    galaxy_ids: list[int] = Field(min_length=1, max_length=queue_service.MAX_ENQUEUE)


class Enqueued(Out):
    task_id: int
    enqueued: int
    ignored: int = Field(description="galaxies outside the task's surveys")
    label_url: str
    message: str


class QueueItemOut(Out):
    galaxy_id: int
    source_id: str
    survey: str
    ra: float | None = None
    dec: float | None = None
    metadata: dict
    image_url: str
    composite_url: str
    thumb_url: str
    bands: list[dict]
    reason: str | None = Field(None, description="why the strategy picked this galaxy")
    source: str | None = Field(None, description="manual, strategy or cold_start")
    strategy: str | None = None
    round: int | None = None
    prediction: dict | None = None
    strip: dict | None = Field(None, description="the band strip from the batch's sprite atlas: {url, "
                               "background_size, composite, bands}: the atlas URL (one per reply), its CSS "
                               "background-size, and the background-position of the composite and of each band")


class QueueOut(Out):
    items: list[QueueItemOut]
    progress: dict
    refilling: dict | None = Field(None, description="the refill job picking more galaxies (ask again "
                                   "shortly when items is empty), or null")


class QueueQuery(Schema):
    n: int = Field(10, ge=1, le=50)
    exclude: str = Field("", description="comma-separated galaxy ids the client already holds")


class LabelIn(Schema):
    galaxy_id: int
    kind: Literal["value", "unsure", "skip"] = "value"
    class_index: int | None = Field(None, description="classification tasks")
    value: float | None = Field(None, description="regression tasks, within the task's range")


class LabelOut(Out):
    label_id: int
    galaxy_id: int
    kind: str
    class_index: int | None = None
    value: float | None = None
    progress: dict | None = Field(None, description="left out (null) if the database dropped after the commit")
    user: dict | None = None


class BulkLabelRow(Schema):
    galaxy_id: int
    kind: Literal["value", "unsure", "skip"] = "value"
    class_index: int | None = Field(None, description="classification tasks: the class's index ...")
    class_: str | None = Field(None, alias="class", description="... or its name")
    value: float | None = Field(None, description="regression tasks, within the task's range")


class BulkLabelsIn(Schema):
    labels: list[BulkLabelRow] = Field(min_length=1, max_length=label_service.MAX_BULK)
    source: str | None = Field(None, max_length=label_import.MAX_SOURCE,
                               description="store them as this source's labels (e.g. 'GZ2 expert'; curator), "
                                           "like an import, instead of as the caller's")


class BulkLabelsOut(Out):
    task_id: int
    stored: int
    source: str | None = None
    label_ids: list[int] = Field(description="in the order of the request's rows")
    progress: dict | None = None


class BulkLabelsError(Error):
    errors: list[dict] = Field(description="row (from 0), galaxy_id and error of each refused row")


class UndoIn(Schema):
    galaxy_id: int | None = Field(None, description="undo on this galaxy; default: your latest answer")


class UndoOut(Out):
    undo_id: int
    undone: dict
    progress: dict | None = None
    user: dict | None = None


class TablePage(Out):
    count: int
    page: int
    num_pages: int
    per_page: int
    columns: list[str]
    results: list[dict]


class PageQuery(Schema):
    page: int = Field(1, ge=1)
    per: int = Field(500, ge=1, le=5000)


class FinetuneIn(Schema):
    config: dict | None = Field(None, description="FinetuneConfig fields, e.g. {\"epochs\": 10}")


class FinetuneQueued(Out):
    job_id: int
    job_url: str
    message: str


# ------------------------------------------------------------------ helpers

def queue_item_dict(item, galaxy, task, prediction=None) -> dict:
    data = browse.galaxy_card(galaxy, thumbs=prerender.page_thumbs(galaxy.survey), bands=prerender.PAGE_BANDS)
    data["galaxy_id"], data["detail_url"] = data.pop("id"), data.pop("url")
    data.update({"reason": item.reason, "source": item.source, "strategy": item.strategy,
                 "round": item.round_number, "prediction": prediction})
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


def round_dict(r: Round) -> dict:
    return {"number": r.number, "status": r.status, "trigger": r.trigger, "model_version": r.model_version,
            "n_labels": r.n_labels, "n_train": r.n_train, "n_val": r.n_val, "metrics": r.metrics,
            "transfer": r.transfer, "strategy": r.strategy, "seconds": r.seconds, "error": r.error,
            "job_id": r.job_id, "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None}


def _paged_table(q: PageQuery, table):
    pages = Paginator(range(len(table)), q.per)
    if q.page > max(pages.num_pages, 1):
        return error(404, f"page {q.page} does not exist (there are {pages.num_pages})")
    start = (q.page - 1) * q.per
    return {"count": len(table), "page": q.page, "num_pages": pages.num_pages, "per_page": q.per,
            "columns": table.colnames, "results": export.table_rows(table, start, start + q.per)}


# ------------------------------------------------------------------ endpoints

@router.get("/tasks/", response=TaskList, url_name="api_task_list", summary="List labeling tasks")
def api_task_list(request):
    tasks = Task.objects.prefetch_related("surveys").order_by("name")
    return {"tasks": [task_dict(t) for t in tasks]}


@router.get(TASK + "/", response={200: TaskDetail, 404: Error}, url_name="api_task_detail",
            summary="One task with its progress, agreement (Fleiss/Cohen kappa) and serving round")
def api_task_detail(request, task_id: int):
    task = get_object_or_404(Task.objects.prefetch_related("surveys"), pk=task_id)
    rnd = serving_round(task)
    return {**task_dict(task), "progress": stats.round_progress(task), "agreement": agreement(task),
            "serving_round": round_dict(rnd) if rnd else None}


@router.post(TASK + "/enqueue", response={200: Enqueued, 400: Error, 403: Error, 404: Error},
             auth=role("labeler"), url_name="api_enqueue",
             summary="Put galaxies at the front of a task's labeling queue (labeler)",
             description="Used by the map's lasso. Galaxies outside the task's surveys are ignored and counted.")
def api_enqueue(request, task_id: int, body: EnqueueIn):
    task = get_object_or_404(Task, pk=task_id)
    count = queue_service.enqueue_galaxies(task, body.galaxy_ids, request.user)
    ignored = len(set(body.galaxy_ids)) - count
    return {"task_id": task.pk, "enqueued": count, "ignored": ignored, "label_url": f"/tasks/{task.pk}/label/",
            "message": f"{count} galaxies are now first in the queue of {task.name}"
                       + (f"; {ignored} are not in this task's surveys" if ignored else "")}


@router.get(TASK + "/queue", response={200: QueueOut, 400: Error, 403: Error, 404: Error, 409: Error},
            auth=role("labeler"), url_name="api_queue",
            summary="The next galaxies for the logged-in labeller, reserved for them (labeler)")
def api_queue(request, task_id: int, q: Query[QueueQuery]):
    task = get_object_or_404(Task, pk=task_id)
    items = queue_service.next_items(task, request.user, q.n, exclude=id_list(q.exclude, "exclude"))
    galaxies = {g.pk: g for g in Galaxy.objects.select_related("survey").only(
        *browse.GALAXY_FIELDS, *static_thumbs.SURVEY_ONLY,
        *[f"survey__{f}" for f in ("name", "slug", "bands", "image_shape", "pixel_scale_arcsec")])
        .filter(pk__in=[i.galaxy_id for i in items])}
    preds = _prediction(task, serving_round(task), [i.galaxy_id for i in items])
    pending = queue_service.pending_refill(task)
    cards = [queue_item_dict(i, galaxies[i.galaxy_id], task, preds.get(i.galaxy_id))
             for i in items if i.galaxy_id in galaxies]
    prerender.add_strips(cards, galaxies)
    return {"items": cards, "progress": stats.round_progress(task),
            "refilling": pending.as_dict() if pending else None}


@router.post(TASK + "/labels", response={201: LabelOut, 400: Error, 403: Error, 404: Error},
             auth=role("labeler"), url_name="api_label",
             summary="Record an answer (append-only): a class, a value, unsure or skip (labeler)")
def api_label(request, task_id: int, body: LabelIn):
    task = get_object_or_404(Task, pk=task_id)
    label = label_service.record_label(task, body.galaxy_id, request.user, body.kind, body.class_index, body.value)
    if label.kind == Label.Kind.VALUE:
        _auto_round_if_available(task)
    return Status(201, {"label_id": label.pk, "galaxy_id": label.galaxy_id, "kind": label.kind,
                       "class_index": label.class_index, "value": label.value,
                       **_counters_if_available(task, request.user)})


@router.post(TASK + "/labels/bulk", response={201: BulkLabelsOut, 400: BulkLabelsError, 403: Error, 404: Error},
             auth=role("labeler"), url_name="api_labels_bulk",
             summary="Record many answers at once, e.g. an expert's labels: all stored or none (labeler)",
             description="Each row is checked like POST /labels and stored as the requesting person's answer, or "
                         "with `source` (curator) as that source's, like an import of expert labels. "
                         "If any row is refused, nothing is stored and the 400 lists every refused row in `errors`.")
def api_labels_bulk(request, task_id: int, body: BulkLabelsIn):
    task = get_object_or_404(Task, pk=task_id)
    source = " ".join((body.source or "").split())
    if source and not has_role(request.user, "curator"):
        raise PermissionDenied("Storing labels as a source needs the curator role.")
    user = label_import.source_user(source) if source else request.user
    rows = [row.dict(by_alias=True) for row in body.labels]
    try:
        labels = label_service.record_labels(task, user, rows, source=source)
    except label_service.BulkLabelError as exc:
        return JsonResponse({"error": str(exc), "errors": exc.errors}, status=400)
    if any(label.kind == Label.Kind.VALUE for label in labels):
        _auto_round_if_available(task)
    return Status(201, {"task_id": task.pk, "stored": len(labels), "label_ids": [label.pk for label in labels],
                        "source": source or None, "progress": _counters_if_available(task, request.user)["progress"]})


@router.post(TASK + "/undo", response={200: UndoOut, 400: Error, 403: Error, 404: Error, 409: Error},
             auth=role("labeler"), url_name="api_undo",
             summary="Retract your latest answer in the task, or on one galaxy (appends an undo row)")
def api_undo(request, task_id: int, body: UndoIn):
    task = get_object_or_404(Task, pk=task_id)
    undo = label_service.undo_last(task, request.user, body.galaxy_id)
    if undo is None:
        return error(409, "nothing to undo")
    undone = undo.undone  # read before the commit: an outage now must not turn a stored undo into a 503
    return {"undo_id": undo.undo_id, "undone": {"label_id": undone.label_id, "galaxy_id": undone.galaxy_id,
                                           "kind": undone.kind, "class_index": undone.class_index,
                                           "value": undone.value},
            **_counters_if_available(task, request.user)}


@router.get(TASK + "/rounds", response={200: RoundList, 404: Error}, url_name="api_rounds",
            summary="The task's rounds with metrics and model versions")
def api_rounds(request, task_id: int):
    task = get_object_or_404(Task, pk=task_id)
    return {"rounds": [round_dict(r) for r in task.rounds.order_by("-number")]}


@router.post(TASK + "/rounds", response={202: RoundStarted, 403: Error, 404: Error, 409: Error},
             auth=role("curator"), summary="Retrain now: queue a round on the cpu queue (curator)")
def api_start_round(request, task_id: int):
    task = get_object_or_404(Task, pk=task_id)
    rnd = round_service.start_round(task, request.user)
    return Status(202, {"round": round_dict(rnd), "job_url": f"/api/jobs/{rnd.job_id}/"})


@router.get(TASK + "/catalogue", response={200: TablePage, 400: Error, 404: Error}, url_name="api_catalogue",
            summary="Per galaxy: RA/Dec, consensus and vote fractions, prediction, uncertainty, model version",
            description="The same columns as the CSV/FITS/VOTable export (/tasks/{task_id}/export?table=catalogue).")
def api_catalogue(request, task_id: int, q: Query[PageQuery]):
    return _paged_table(q, export.catalogue_table(get_object_or_404(Task, pk=task_id)))


@router.get(TASK + "/labels/history", response={200: TablePage, 400: Error, 404: Error}, url_name="api_labels",
            summary="Every label row as recorded (undo rows included; `counts` marks current answers)")
def api_labels(request, task_id: int, q: Query[PageQuery]):
    return _paged_table(q, export.labels_table(get_object_or_404(Task, pk=task_id)))


@router.post(TASK + "/finetune", response={202: FinetuneQueued, 400: Error, 403: Error, 404: Error, 409: Error},
             auth=role("curator"), url_name="api_finetune",
             summary="Fine-tune the task's encoder on its labels (gpu), re-embed, switch, retrain (curator)",
             description="Queues label_finetune -> embed -> label_use_embeddings. Nothing changes for the task "
                         "until the last job succeeds.")
def api_finetune(request, task_id: int, body: FinetuneIn):
    task = get_object_or_404(Task, pk=task_id)
    job = finetune_service.start_finetune(task, request.user, body.config)
    return Status(202, {"job_id": job.pk, "job_url": f"/api/jobs/{job.pk}/",
                       "message": "fine-tune -> embed -> switch jobs queued"})
