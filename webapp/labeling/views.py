"""Labeling pages: task list, task form, task page with plots, labeling page, exports."""
from __future__ import annotations

import numpy as np
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.accounts.roles import has_role, role_required
from webapp.jobs.models import Job
from webapp.labeling import plots
from webapp.labeling.forms import TaskForm
from webapp.labeling.models import Task
from webapp.labeling.services import export, finetune as finetune_service, metric_display, rounds as round_service, stats
from webapp.labeling.services.consensus import agreement, team_consensus
from webapp.labeling.services.picking import STRATEGY_LABELS
from webapp.labeling.services.store import predictions_for, serving_round
from webapp.labeling.services.tasks import task_dict


def task_list(request):
    tasks = list(Task.objects.prefetch_related("surveys").select_related("embedding_set").order_by("name"))
    summaries = stats.task_summaries(tasks)
    rows = [{"task": t, **summaries[t.pk]} for t in tasks]
    return render(request, "labeling/task_list.html", {"rows": rows})


@role_required("curator")
def task_new(request):
    form = TaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        task = form.save(commit=False)
        task.created_by = request.user
        task.save()
        form.save_m2m()
        messages.success(request, f"Task “{task.name}” created. The first galaxies are diverse k-means seeds.")
        return redirect("labeling:task_detail", task_id=task.pk)
    return render(request, "labeling/task_form.html", {"form": form, "title": "New labeling task"},
                  status=400 if request.method == "POST" else 200)


@role_required("curator")
def task_edit(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    form = TaskForm(request.POST or None, instance=task)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Task settings saved; the next refill of the queue uses them.")
        return redirect("labeling:task_detail", task_id=task.pk)
    return render(request, "labeling/task_form.html", {"form": form, "task": task, "title": f"Edit {task.name}"},
                  status=400 if request.method == "POST" else 200)


def task_detail(request, task_id):
    task = get_object_or_404(Task.objects.select_related("embedding_set", "source_survey", "queue_survey"), pk=task_id)
    all_rounds = list(task.rounds.select_related("job").order_by("-number"))
    serving = next((r for r in all_rounds if r.status == "ready"), None)
    active = round_service.active_round(task)
    for r in all_rounds:   # value, 95% interval and n side by side (old rounds: no interval)
        r.cells = metric_display.metric_cells(r.metrics, task.is_classification)
        r.evaluated_on = metric_display.evaluated_on(r.metrics or {})
    context = {
        "task": task, "rounds": all_rounds, "serving": serving, "active_round": active,
        "progress": stats.round_progress(task), "agreement": agreement(task), "team": team_consensus(task),
        "strategy_label": STRATEGY_LABELS.get(task.strategy, task.strategy),
        "learning_curve": plots.learning_curve(all_rounds, task.is_classification) if serving else None,
        "transfer_rows": _transfer_rows(all_rounds), "export_formats": export.FORMATS,
        "surveys": list(task.surveys.all()),
        "calibration": metric_display.calibration_summary(serving.metrics) if serving else None,
        "finetune_min_labels": finetune_service.MIN_LABELS,
        "finetune_jobs": Job.objects.filter(kind__in=["label_finetune", "label_use_embeddings"],
                                            params__task_id=task.pk).order_by("-created_at")[:3],
    }
    if serving and task.is_classification and serving.metrics.get("confusion"):
        context["confusion"] = plots.confusion_matrix(serving.metrics["confusion"], task.class_names)
        context["reliability"] = plots.reliability_diagram(serving.metrics.get("reliability", {}))
    return render(request, "labeling/task_detail.html", context)


def _transfer_rows(all_rounds) -> list[dict]:
    """A→B accuracy before and after adaptation, per target survey, newest round first."""
    rows = []
    for r in all_rounds:
        if r.status != "ready":
            continue
        for slug, t in (r.transfer or {}).items():
            rows.append({"round": r.number, "source": t.get("source"), "target": slug,
                         "n": t.get("n_target_labels"), "before": t["before"], "after": t["after"],
                         "before_ci": metric_display.accuracy_interval(t["before"]),
                         "after_ci": metric_display.accuracy_interval(t["after"])})
    return rows


@require_POST
@role_required("curator")
def round_start(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        rnd = round_service.start_round(task, request.user)
    except round_service.RoundError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Round {rnd.number} is training on the cpu queue (job {rnd.job_id}).")
    return redirect("labeling:task_detail", task_id=task.pk)


@require_POST
@role_required("curator")
def finetune_start(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        job = finetune_service.start_finetune(task, request.user)
    except finetune_service.FinetuneError as exc:
        messages.error(request, str(exc))
        return redirect("labeling:task_detail", task_id=task.pk)
    messages.info(request, "Fine-tuning on the gpu queue; the surveys are then re-embedded and the task "
                           "switches to the new embeddings with a fresh round. Until then nothing changes.")
    return redirect("jobs:detail", job_id=job.pk)


@role_required("labeler")
def label_page(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    keys = {c.get("key"): i for i, c in enumerate(task.classes or []) if c.get("key")}
    boot = {"task": task_dict(task), "keys": keys, "progress": stats.round_progress(task),
            "user": stats.user_progress(task, request.user),
            "urls": {"queue": reverse("labeling:api_queue", args=[task.pk]),
                     "label": reverse("labeling:api_label", args=[task.pk]),
                     "undo": reverse("labeling:api_undo", args=[task.pk]),
                     "task": reverse("labeling:task_detail", args=[task.pk])}}
    return render(request, "labeling/label.html", {
        "task": task, "boot": boot, "classes": task.classes,
        "strategy_label": STRATEGY_LABELS.get(task.strategy, task.strategy), "serving": serving_round(task)})


def task_export(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    fmt, table_name = request.GET.get("format", "csv"), request.GET.get("table", "catalogue")
    if fmt not in export.FORMATS or table_name not in export.TABLES:
        return HttpResponseBadRequest(f"format must be one of {sorted(export.FORMATS)} and table one of "
                                      f"{list(export.TABLES)}", content_type="text/plain")
    table = export.catalogue_table(task) if table_name == "catalogue" else export.labels_table(task)
    _, content_type, ext = export.FORMATS[fmt]
    slug = "".join(ch if ch.isalnum() else "-" for ch in task.name.lower()).strip("-") or f"task{task.pk}"
    response = HttpResponse(export.render_table(table, fmt), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{slug}-{table_name}.{ext}"'
    return response


def _galaxy_prediction(task, rnd, galaxy_id) -> dict | None:
    """The serving round's values for one galaxy, read by row from its columnar files."""
    try:
        preds = predictions_for(rnd, [galaxy_id])
    except (OSError, ValueError):        # files gone (pruned meanwhile): show no prediction
        return None
    unc = float(preds["uncertainty"][0])
    if not np.isfinite(unc):
        return None
    if task.is_classification:
        probs = preds["probs"][0]
        return {"probs": probs, "class_index": int(np.argmax(probs)), "uncertainty": unc}
    return {"mean": float(preds["mean"][0]), "uncertainty": unc}


def detail_panel(request, galaxy):
    """Galaxy page panel: each task's prediction, uncertainty and people's votes for this galaxy."""
    items, label_tasks = [], []
    for task in Task.objects.filter(surveys=galaxy.survey_id).distinct():
        rnd = serving_round(task)
        p = _galaxy_prediction(task, rnd, galaxy.pk) if rnd is not None else None
        if p is None:
            label_tasks.append(task)
            continue
        entry = {"task": task, "round": rnd, "votes": export.answers_for_galaxy(task, galaxy.pk)}
        if task.is_classification:
            entry["classes"] = [{"name": n, "p": round(float(p["probs"][i]), 4), "predicted": i == p["class_index"]}
                                for i, n in enumerate(task.class_names) if i < len(p["probs"])]
            entry["predicted"] = task.class_names[p["class_index"]]
        else:
            entry["value"], entry["sigma"] = p["mean"], p["uncertainty"]
        entry["uncertainty"] = p["uncertainty"]
        items.append(entry)
    if not items and not label_tasks:
        return None
    return {"template": "labeling/_detail_panel.html",
            "context": {"items": items, "unpredicted": label_tasks, "galaxy": galaxy,
                        "can_label": has_role(request.user, "labeler")}}
