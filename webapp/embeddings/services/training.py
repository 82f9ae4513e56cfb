"""The ``train_encoder`` job (gpu queue): train a contrastive encoder on one or more surveys.

Params (demo pipeline, train form and API all use these):
  surveys [slugs] · name · method simclr|byol · preset small|large · epochs · seed
  optional: batch_size, image_size, crop_fraction, lr, temperature, augment {AugmentConfig fields},
  encoder_id (continue training that encoder from its checkpoint), evaluate (default true).
Result: {"encoder_id", "epochs_done", "training_seconds", "final_loss"}.

Crash safety: the checkpoint is rewritten atomically after every epoch. A re-delivered job
(attempts > 1 after a lost worker) finds its Encoder row by ``train_job`` and continues from
that checkpoint; cancelling keeps it, marks the encoder "stopped" and the encoders page
offers to resume. Job.metrics gets "loss" [[step, loss]] (the live curve) and
"epoch_loss" [[epoch, mean loss]]; the message says "epoch e/E · step s/S · loss x".
"""
from __future__ import annotations

import logging
from dataclasses import asdict

from django.utils import timezone

from ml.embed import pick_device
from ml.train import StepEvent, TrainConfig, train
from webapp.embeddings.models import ArtifactStatus, Encoder
from webapp.embeddings.services.encoders import (abspath, checkpoint_relpath, launch_evaluation,
                                                 resolve_surveys, survey_source)
from webapp.jobs.models import Job
from webapp.jobs.services import JobCancelled

log = logging.getLogger(__name__)
LOAD_SHARE = 0.04  # share of the progress bar spent reading the surveys
MAX_LOSS_POINTS = 600  # the live curve keeps at most about this many points (means over steps)
CONFIG_KEYS = ("method", "preset", "epochs", "batch_size", "image_size", "crop_fraction", "lr",
               "temperature", "seed", "augment", "encoder", "weight_decay", "warmup_epochs", "byol_tau")


def train_config_from_params(params: dict) -> TrainConfig:
    """TrainConfig from job params (unknown or invalid values -> ValueError naming them)."""
    values = {k: params[k] for k in CONFIG_KEYS if k in params and params[k] is not None}
    if "augment" in values:
        values["augment"] = {**asdict(TrainConfig()).get("augment"), **dict(values["augment"])}
    return TrainConfig.from_dict(values)


def _encoder_for(job: Job, params: dict, config: TrainConfig, surveys) -> Encoder:
    """The Encoder this job trains: an existing one to continue, this job's from an earlier
    attempt, or a new row."""
    if params.get("encoder_id"):
        encoder = Encoder.objects.get(pk=params["encoder_id"])
        if encoder.source != Encoder.Source.TRAINED:
            raise ValueError(f"encoder {encoder.pk} was uploaded; it has no training state to continue")
        if encoder.status == ArtifactStatus.READY and encoder.train_job_id != job.pk:
            raise ValueError(f"encoder {encoder.pk} has finished training; train a new encoder instead "
                             "(its embedding sets were made with the current weights)")
        encoder.train_job = job
        encoder.status = ArtifactStatus.BUILDING
        encoder.save(update_fields=["train_job", "status"])
        return encoder
    encoder = Encoder.objects.filter(train_job=job).first()
    if encoder is None:
        encoder = Encoder.objects.create(
            name=str(params.get("name") or f"{config.method}-{config.preset}")[:100], method=config.method,
            config={"train": asdict(config)}, train_job=job, created_by=job.launched_by,
            status=ArtifactStatus.BUILDING)
        encoder.surveys.set(surveys)
        encoder.checkpoint_path = checkpoint_relpath(encoder)
        encoder.save(update_fields=["checkpoint_path"])
    return encoder


class JobReporter:
    """Turns StepEvents into the job's progress bar, live loss curve and the Encoder's epochs_done."""

    def __init__(self, job: Job, progress, encoder: Encoder, total_steps: int):
        self.job, self.progress, self.encoder = job, progress, encoder
        self.stride = max(1, total_steps // MAX_LOSS_POINTS)
        self.pending: list[tuple[int, float]] = []

    def __call__(self, event: StepEvent) -> None:
        self.pending.append((event.step, event.loss))
        if len(self.pending) >= self.stride or event.epoch_end:
            step = self.pending[-1][0]
            self.progress.metric("loss", step, round(sum(v for _, v in self.pending) / len(self.pending), 5))
            self.pending = []
        if event.epoch_end:
            self.progress.metric("epoch_loss", event.epoch, round(event.epoch_loss, 5))
            Encoder.objects.filter(pk=self.encoder.pk).update(epochs_done=event.epoch)
        message = (f"epoch {event.epoch}/{event.epochs} · step {event.step}/{event.total_steps} · "
                   f"loss {event.loss:.4f}")
        if event.epoch_end:
            message = f"epoch {event.epoch}/{event.epochs} done (checkpoint saved) · loss {event.epoch_loss:.4f}"
        self.progress(LOAD_SHARE + (1 - LOAD_SHARE) * event.step / event.total_steps, 1.0, message)
        if event.epoch_end:
            self.progress.flush()


def _trim_series(progress, upto_step: int, upto_epoch: int) -> None:
    """On resume, drop live-curve points the lost attempt recorded after its last checkpoint,
    so the curve does not draw those steps twice. (Progress keeps the series it writes in
    ``_series``; there is no public reset, hence the guarded access.)"""
    series = getattr(progress, "_series", None)
    if not isinstance(series, dict):
        return
    series["loss"] = [p for p in series.get("loss", []) if p[0] <= upto_step]
    series["epoch_loss"] = [p for p in series.get("epoch_loss", []) if p[0] <= upto_epoch]
    progress._dirty_metrics = True


def run_train_job(job: Job, progress) -> dict:
    params = dict(job.params)
    config = train_config_from_params(params)
    surveys = resolve_surveys(params.get("surveys") or [])
    encoder = _encoder_for(job, params, config, surveys)
    if params.get("encoder_id"):
        surveys = list(encoder.surveys.all()) or surveys
        config = TrainConfig.from_dict({**encoder.config.get("train", {}), "epochs": config.epochs})
    progress(0, 1, f"reading {sum(s.n_galaxies for s in surveys):,} images from {', '.join(s.slug for s in surveys)}")
    source = survey_source(surveys)
    checkpoint = abspath(encoder.checkpoint_path)
    resumed_epochs = encoder.epochs_done if checkpoint.exists() else 0
    if resumed_epochs:
        steps = len(source) // min(config.batch_size, len(source))
        _trim_series(progress, resumed_epochs * steps, resumed_epochs)
        progress(LOAD_SHARE, 1.0, f"resuming from the checkpoint of epoch {resumed_epochs}")
    device = pick_device()
    total_steps = (len(source) // min(config.batch_size, len(source))) * config.epochs
    reporter = JobReporter(job, progress, encoder, total_steps)
    try:
        result = train(source, config, checkpoint, image_kind=surveys[0].image_kind, bands=list(surveys[0].bands),
                       on_step=reporter, device=device)
    except JobCancelled:
        _stop(encoder, "cancelled")
        raise
    except Exception as exc:
        _stop(encoder, f"failed: {exc}"[:200])
        raise
    final_loss = result.epoch_losses[-1][1] if result.epoch_losses else None
    encoder.refresh_from_db()
    encoder.config = {"train": asdict(config), "encoder": _encoder_dict(result.model), "preprocess":
                      result.preprocess.to_dict(), "n_train": len(source), "device": device.type,
                      "surveys": [s.slug for s in surveys], "final_loss": final_loss,
                      "parameters": sum(p.numel() for p in result.model.parameters()),
                      "trained_at": timezone.now().isoformat()}
    encoder.status, encoder.epochs_done = ArtifactStatus.READY, result.epochs_done
    encoder.training_seconds = round(result.seconds, 2)
    encoder.metrics = {k: v for k, v in (encoder.metrics or {}).items() if k != "stopped"}
    encoder.save(update_fields=["config", "status", "epochs_done", "training_seconds", "metrics"])
    if params.get("evaluate", True) and not job.children.filter(kind="evaluate_encoder").exists():
        launch_evaluation(encoder, user=job.launched_by, parent=job)
    return {"encoder_id": encoder.pk, "epochs_done": result.epochs_done,
            "training_seconds": round(result.seconds, 2), "final_loss": final_loss,
            "resumed_from_epoch": result.resumed_from_epoch}


def _encoder_dict(model) -> dict:
    from ml.encoders import config_to_dict

    data = config_to_dict(model.config)
    data["feature_dim"] = model.feature_dim
    return data


def _stop(encoder: Encoder, why: str) -> None:
    """Mark an interrupted encoder: its last epoch checkpoint stays for a resume."""
    encoder.refresh_from_db()
    metrics = dict(encoder.metrics or {})
    metrics["stopped"] = {"reason": why, "epochs_done": encoder.epochs_done,
                          "resumable": abspath(encoder.checkpoint_path).exists()}
    Encoder.objects.filter(pk=encoder.pk).update(status=ArtifactStatus.FAILED, metrics=metrics)
