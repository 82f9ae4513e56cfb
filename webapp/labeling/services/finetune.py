"""Optional encoder fine-tuning for a task (gpu queue), then re-embedding and switching over.

A chain of ordinary jobs, each with its own progress bar on the Jobs page:
  label_finetune (gpu)       fine-tune a copy of the task's encoder on the task's consensus
                             labels (ml.transfer) -> a new Encoder row and checkpoint
  embed (gpu)                the embeddings app embeds the same surveys with the new encoder
  label_use_embeddings       point the task at the new EmbeddingSet and train a round on it
If any step fails, the task keeps its embeddings, model and predictions: nothing changes
until the last step, and that step only swaps one foreign key.
"""
from __future__ import annotations

import time
from dataclasses import asdict, fields

import numpy as np
from django.db import transaction

from ml.checkpoints import export_encoder, load_encoder
from ml.transfer import FinetuneConfig, finetune_encoder
from webapp.catalog.models import Galaxy
from webapp.catalog.services.store_cache import read_images
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services.encoders import abspath, checkpoint_relpath
from webapp.jobs.models import Job
from webapp.labeling.models import Task
from webapp.labeling.services.consensus import build_consensus

MIN_LABELS = 20           # fewer labelled galaxies than this: fine-tuning would only over-fit


class FinetuneError(ValueError):
    """Fine-tuning cannot start; the message says why."""


def finetune_config(overrides: dict | None) -> FinetuneConfig:
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in fields(FinetuneConfig)})
    if unknown:
        raise FinetuneError(f"unknown fine-tuning options {unknown}")
    return FinetuneConfig(**overrides)


def start_finetune(task: Task, user=None, config: dict | None = None) -> Job:
    """Queue the fine-tune -> embed -> switch chain (curators)."""
    from webapp.jobs.services import create_job

    if not task.is_classification:
        raise FinetuneError("fine-tuning is available for classification tasks")
    encoder = task.embedding_set.encoder
    if encoder.status != ArtifactStatus.READY or not encoder.checkpoint_path:
        raise FinetuneError(f"the task's encoder “{encoder.name}” has no ready checkpoint to start from")
    n = len(build_consensus(task))
    if n < MIN_LABELS:
        raise FinetuneError(f"fine-tuning needs at least {MIN_LABELS} labelled galaxies; this task has {n}")
    busy = Job.objects.filter(kind__in=["label_finetune", "label_use_embeddings"], params__task_id=task.pk,
                              status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()
    if busy:
        raise FinetuneError(f"fine-tuning of this task is already under way (job {busy.pk})")
    finetune_config(config)       # refuse bad options now, not on the worker
    surveys = sorted(task.embedding_set.surveys.values_list("slug", flat=True))
    with transaction.atomic():
        return create_job("label_finetune", {"task_id": task.pk, "config": dict(config or {})}, user=user,
                          title=f"Fine-tune encoder for {task.name}", then=[{
                              "kind": "embed", "title": f"Embed with the encoder fine-tuned for {task.name}",
                              "params": {"encoder_id": "$parent.encoder_id", "surveys": surveys},
                              "then": [{"kind": "label_use_embeddings", "title": f"Switch {task.name} to the "
                                        "fine-tuned embeddings", "params": {
                                            "task_id": task.pk, "embedding_set_id": "$parent.embedding_set_id"}}]}])


def labelled_images(task: Task, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) of the consensus-labelled galaxies whose survey has C bands, and labels."""
    cons = build_consensus(task)
    label_of = dict(zip(cons.galaxy_ids.tolist(), cons.label.tolist()))
    rows = Galaxy.objects.filter(pk__in=list(label_of)).select_related("survey").only(
        "id", "image_index", "survey__id", "survey__store_path", "survey__image_shape")
    by_survey: dict[int, list] = {}
    for g in rows:
        if g.survey.image_shape and int(g.survey.image_shape[1]) == channels:
            by_survey.setdefault(g.survey_id, []).append(g)
    images, labels, sizes = [], [], set()
    for galaxies in by_survey.values():
        galaxies.sort(key=lambda g: g.image_index)
        images.append(read_images(galaxies[0].survey.store_abspath, [g.image_index for g in galaxies]))
        labels += [label_of[g.pk] for g in galaxies]
        sizes.add(images[-1].shape[-1])
    if not images:
        raise FinetuneError(f"no labelled galaxy comes from a survey with the encoder's {channels} bands")
    if len(sizes) > 1:    # stores of different cutout sizes: keep the largest group, say so in the report
        keep = max(range(len(images)), key=lambda i: len(images[i]))
        start = sum(len(images[i]) for i in range(keep))
        return images[keep], np.asarray(labels[start:start + len(images[keep])], dtype=np.int64)
    return np.concatenate(images), np.asarray(labels, dtype=np.int64)


def run_finetune_job(job: Job, progress) -> dict:
    """Job handler (gpu queue): params {"task_id", "config"} -> {"encoder_id"}."""
    task = Task.objects.select_related("embedding_set__encoder").get(pk=job.params["task_id"])
    done = Encoder.objects.filter(train_job=job, status=ArtifactStatus.READY).first()
    if done is not None:          # a redelivered message after the work finished
        return {"encoder_id": done.pk}
    parent = task.embedding_set.encoder
    cfg = finetune_config(job.params.get("config"))
    progress(0, 100, "reading the labelled galaxies' images")
    model, preprocess, _ = load_encoder(abspath(parent.checkpoint_path))
    images, y = labelled_images(task, model.config.in_channels)
    started = time.perf_counter()
    tuned, report = finetune_encoder(model, preprocess, images, y, len(task.classes), cfg,
                                     progress=lambda d, t, m: progress(5 + 90 * d / max(t, 1), 100, m))
    encoder = Encoder.objects.create(
        name=f"{parent.name} · fine-tuned for {task.name}"[:100], method=parent.method,
        source=Encoder.Source.TRAINED, status=ArtifactStatus.BUILDING, train_job=job, created_by=job.launched_by,
        config={**parent.config, "finetune": {"config": asdict(cfg), "parent_encoder_id": parent.pk,
                                              "task_id": task.pk, "n_labels": int(len(y))}})
    encoder.surveys.set(parent.surveys.all())
    relative = checkpoint_relpath(encoder, "finetuned.pt")
    abspath(relative).parent.mkdir(parents=True, exist_ok=True)
    export_encoder(tuned, preprocess, abspath(relative))          # written atomically
    Encoder.objects.filter(pk=encoder.pk).update(
        checkpoint_path=relative, status=ArtifactStatus.READY, epochs_done=cfg.epochs,
        training_seconds=round(time.perf_counter() - started, 2),
        metrics={"finetune": {k: report[k] for k in ("train_accuracy", "losses", "device", "n_labels")}})
    progress(100, 100, f"fine-tuned on {len(y)} labels (train accuracy {report['train_accuracy']:.2f})")
    return {"encoder_id": encoder.pk, "train_accuracy": report["train_accuracy"], "device": report["device"]}


def run_use_embeddings_job(job: Job, progress) -> dict:
    """Job handler: params {"task_id", "embedding_set_id"}: switch the task, then train a round."""
    from webapp.labeling.services.rounds import RoundError, start_round

    task = Task.objects.get(pk=job.params["task_id"])
    es = EmbeddingSet.objects.get(pk=job.params["embedding_set_id"])
    if es.status != ArtifactStatus.READY:
        raise FinetuneError(f"embedding set {es.pk} is {es.status}, not ready")
    missing = set(task.surveys.values_list("slug", flat=True)) - set(es.surveys.values_list("slug", flat=True))
    if missing:
        raise FinetuneError(f"embedding set {es.pk} lacks the task's surveys {sorted(missing)}")
    previous = task.embedding_set_id
    Task.objects.filter(pk=task.pk).update(embedding_set=es)
    task.refresh_from_db()
    progress(50, 100, f"task now uses embedding set {es.pk}; starting a round")
    try:
        rnd = start_round(task, job.launched_by)
    except RoundError as exc:
        return {"task_id": task.pk, "embedding_set_id": es.pk, "previous_embedding_set_id": previous,
                "round": None, "note": str(exc)}
    return {"task_id": task.pk, "embedding_set_id": es.pk, "previous_embedding_set_id": previous,
            "round": rnd.number, "round_job_id": rnd.job_id}
