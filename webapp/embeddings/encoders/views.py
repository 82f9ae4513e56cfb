"""Encoder pages: list, detail, train form, checkpoint upload, embed, evaluate, resume (JSON API: api.py).

Reading is open to every logged-in user; everything that starts a job or adds a model
needs the curator role (403 otherwise). Views validate, call one service, respond.
"""
from __future__ import annotations

import json

from bokeh.embed import json_item
from django.contrib import messages
from django.db.models import Prefetch
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ml.checkpoints import CheckpointError
from webapp.accounts.roles import role_required
from webapp.catalog.models import Survey
from webapp.embeddings.encoders import plots
from webapp.embeddings.forms import EmbedForm, TrainEncoderForm, UploadEncoderForm
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services import encoders as service
from webapp.jobs.models import Job

ENCODER_JOB_KINDS = ("train_encoder", "embed", "evaluate_encoder")


def _encoders():
    sets = EmbeddingSet.objects.prefetch_related("surveys").order_by("-created_at", "-id")
    return (Encoder.objects.select_related("train_job", "created_by")
            .prefetch_related("surveys", Prefetch("embedding_sets", queryset=sets)))


def _charts(encoders) -> dict:
    """{encoder id: [json_item, ...]} with one bar chart per evaluated survey."""
    charts: dict = {}
    for encoder in encoders:
        for report in (encoder.metrics or {}).get("evaluation", {}).values():
            charts.setdefault(encoder.pk, []).append(json_item(plots.evaluation_bars(report)))
    return charts


def encoder_list(request):
    encoders = list(_encoders())
    active = Job.objects.filter(kind__in=ENCODER_JOB_KINDS, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    charts = _charts(encoders)
    return render(request, "embeddings/encoder_list.html", {
        "encoders": encoders, "charts": charts,
        "active_jobs": active.order_by("-created_at")[:10]})


def encoder_detail(request, encoder_id):
    encoder = get_object_or_404(_encoders(), pk=encoder_id)
    charts = _charts([encoder])
    epoch_points = (encoder.train_job.metrics or {}).get("epoch_loss", []) if encoder.train_job else []
    loss_plot = json_item(plots.epoch_loss_chart(epoch_points)) if epoch_points else None
    jobs = Job.objects.filter(kind__in=ENCODER_JOB_KINDS, params__encoder_id=encoder.pk).order_by("-created_at")[:20]
    stopped = (encoder.metrics or {}).get("stopped")
    return render(request, "embeddings/encoder_detail.html", {
        "encoder": encoder, "charts": charts.get(encoder.pk, []), "loss_plot": loss_plot,
        "evaluation": (encoder.metrics or {}).get("evaluation", {}), "jobs": jobs, "stopped": stopped,
        "embed_form": EmbedForm(encoder=encoder, initial={"surveys": [s.slug for s in encoder.surveys.all()]}),
        "config_json": json.dumps(encoder.config, indent=1, default=str),
        "train_epochs": (encoder.config.get("train") or {}).get("epochs")})


@role_required("curator")
def encoder_train(request):
    form = TrainEncoderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        job = service.launch_training(form.job_params(), user=request.user)
        messages.info(request, f"Training of {form.cleaned_data['name']} queued (job {job.pk}); "
                               "the loss curve appears on the job page.")
        return redirect("jobs:detail", job_id=job.pk)
    sizes = dict(Survey.objects.filter(status=Survey.Status.READY).values_list("slug", "n_galaxies"))
    return render(request, "embeddings/encoder_train.html", {"form": form, "survey_sizes": sizes},
                  status=400 if request.method == "POST" else 200)


@role_required("curator")
def encoder_upload(request):
    form = UploadEncoderForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["timm_arch"].strip():
                encoder = service.register_timm(data["checkpoint"], data["timm_arch"].strip(), data["name"],
                                                data["surveys"], form.timm_options(), user=request.user)
            else:
                encoder = service.register_upload(data["checkpoint"], data["name"], data["surveys"],
                                                  user=request.user)
        except (CheckpointError, service.SurveyProblem) as exc:
            form.add_error("checkpoint", f"This checkpoint cannot be used: {exc}")
        else:
            messages.success(request, f"Encoder {encoder.name} added ({encoder.config['encoder']['feature_dim']}-d).")
            return redirect("embeddings:encoder_detail", encoder_id=encoder.pk)
    return render(request, "embeddings/encoder_upload.html", {"form": form},
                  status=400 if request.method == "POST" else 200)


@require_POST
@role_required("curator")
def encoder_embed(request, encoder_id):
    encoder = get_object_or_404(Encoder, pk=encoder_id)
    form = EmbedForm(request.POST, encoder=encoder)
    if encoder.status != ArtifactStatus.READY:
        messages.error(request, f"{encoder.name} is {encoder.status}; only ready encoders can embed.")
    elif not form.is_valid():
        messages.error(request, "Cannot embed: " + " ".join(e for errs in form.errors.values() for e in errs))
    else:
        job = service.launch_embedding(encoder, form.cleaned_data["surveys"], user=request.user)
        messages.info(request, f"Embedding queued (job {job.pk}).")
        return redirect("jobs:detail", job_id=job.pk)
    return redirect("embeddings:encoder_detail", encoder_id=encoder.pk)


@require_POST
@role_required("curator")
def encoder_evaluate(request, encoder_id):
    encoder = get_object_or_404(Encoder, pk=encoder_id)
    if encoder.status != ArtifactStatus.READY:
        messages.error(request, f"{encoder.name} is {encoder.status}; only ready encoders can be evaluated.")
        return redirect("embeddings:encoder_detail", encoder_id=encoder.pk)
    job = service.launch_evaluation(encoder, user=request.user)
    messages.info(request, f"Evaluation queued (job {job.pk}).")
    return redirect("jobs:detail", job_id=job.pk)


@require_POST
@role_required("curator")
def encoder_resume(request, encoder_id):
    encoder = get_object_or_404(Encoder, pk=encoder_id)
    stopped = (encoder.metrics or {}).get("stopped") or {}
    if encoder.status != ArtifactStatus.FAILED or not stopped.get("resumable"):
        messages.error(request, f"{encoder.name} has no interrupted training to resume.")
        return redirect("embeddings:encoder_detail", encoder_id=encoder.pk)
    train = dict(encoder.config.get("train") or {})
    params = {**train, "encoder_id": encoder.pk, "name": encoder.name,
              "surveys": [s.slug for s in encoder.surveys.all()]}
    job = service.launch_training(params, user=request.user,
                                  title=f"Resume {encoder.name} from epoch {stopped.get('epochs_done', 0)}")
    messages.info(request, f"Training resumes from the last checkpoint (job {job.pk}).")
    return redirect("jobs:detail", job_id=job.pk)


def encoder_download(request, encoder_id):
    encoder = get_object_or_404(Encoder, pk=encoder_id)
    path = service.abspath(encoder.checkpoint_path) if encoder.checkpoint_path else None
    if path is None or not path.exists() or encoder.status != ArtifactStatus.READY:
        raise Http404("This encoder has no finished checkpoint.")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=f"latentsky-encoder-{encoder.pk}.pt",
                        content_type="application/octet-stream")
