"""Encoders JSON API: list, one encoder, train (curator), embed surveys (curator)."""
from __future__ import annotations

from django.urls import reverse
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict

from webapp.apikit import Error, Out, error, role
from webapp.embeddings.forms import EmbedForm, validate_train_params
from webapp.embeddings.models import ArtifactStatus, Encoder
from webapp.embeddings.services import encoders as service
from webapp.embeddings.encoders.views import _encoders
from webapp.jobs.models import Job

router = Router()


class EmbeddingSetBrief(Out):
    id: int
    name: str
    n: int | None = None
    dim: int | None = None
    status: str
    checksum: str | None = None
    surveys: list[str]


class EncoderOut(Out):
    id: int
    name: str
    method: str = Field(description="simclr or byol")
    source: str = Field(description="trained or uploaded")
    status: str = Field(description="building, ready or failed")
    epochs_done: int | None = None
    epochs: int | None = None
    training_seconds: float | None = None
    dim: int | None = None
    surveys: list[str]
    config: dict = Field(description="train (TrainConfig), encoder (EncoderConfig), preprocess")
    metrics: dict | None = Field(None, description="evaluation per survey (kNN / linear probe against PCA and "
                                                   "random baselines); stopped: why training was interrupted")
    train_job_id: int | None = None
    created_at: str
    embedding_sets: list[EmbeddingSetBrief]
    url: str


class EncoderList(Out):
    encoders: list[EncoderOut]


class JobQueued(Out):
    job_id: int
    job_url: str
    api_url: str


class TrainIn(Schema):
    """A train_encoder job (TrainConfig fields in ml/contrastive.py; omitted ones keep defaults)."""
    model_config = ConfigDict(extra="forbid")
    surveys: list[str] = Field(description="survey slugs; trained on together")
    name: str
    method: str | None = Field(None, description="simclr or byol")
    preset: str | None = Field(None, description="small or large")
    epochs: int | None = Field(None, ge=1, le=1000)
    seed: int | None = None
    batch_size: int | None = Field(None, ge=4, le=8192)
    image_size: int | None = Field(None, ge=32, le=96)
    crop_fraction: float | None = None
    lr: float | None = None
    temperature: float | None = None
    augment: dict | None = Field(None, description="AugmentConfig fields (ml/augment.py)")
    embed_after: bool | None = Field(None, description="queue an embedding of the training surveys afterwards")
    evaluate: bool | None = Field(None, description="evaluate after training (default true)")


class EmbedIn(Schema):
    surveys: list[str] = Field(description="survey slugs, embedded into one shared set")


def encoder_as_dict(encoder: Encoder) -> dict:
    config = encoder.config or {}
    return {
        "id": encoder.pk, "name": encoder.name, "method": encoder.method, "source": encoder.source,
        "status": encoder.status, "epochs_done": encoder.epochs_done,
        "epochs": (config.get("train") or {}).get("epochs"), "training_seconds": encoder.training_seconds,
        "dim": (config.get("encoder") or {}).get("feature_dim"), "surveys": [s.slug for s in encoder.surveys.all()],
        "config": config, "metrics": encoder.metrics, "train_job_id": encoder.train_job_id,
        "created_at": encoder.created_at.isoformat(),
        "embedding_sets": [{"id": es.pk, "name": es.name, "n": es.n, "dim": es.dim, "status": es.status,
                            "checksum": es.checksum, "surveys": [s.slug for s in es.surveys.all()]}
                           for es in encoder.embedding_sets.all()],
        "url": reverse("embeddings:encoder_detail", args=[encoder.pk]),
    }


def _queued(job: Job):
    return Status(202, {"job_id": job.pk, "job_url": reverse("jobs:detail", args=[job.pk]),
                       "api_url": reverse("jobs:api_detail", args=[job.pk])})


@router.get("/encoders/", response=EncoderList, url_name="encoder_api_list",
            summary="All encoders with config, training time, evaluation metrics and embedding sets")
def api_encoders(request):
    return {"encoders": [encoder_as_dict(e) for e in _encoders()]}


@router.post("/encoders/", response={202: JobQueued, 400: Error, 403: Error}, auth=role("curator"),
             summary="Train a new encoder: queues a train_encoder job on the gpu queue (curator)")
def api_train(request, body: TrainIn):
    params = body.dict(exclude_unset=True)
    problems = validate_train_params(params)
    if problems:
        return error(400, "; ".join(problems))
    return _queued(service.launch_training(params, user=request.user))


@router.get("/encoders/{int:encoder_id}/", response={200: EncoderOut, 404: Error}, url_name="encoder_api_detail",
            summary="One encoder")
def api_encoder_detail(request, encoder_id: int):
    encoder = _encoders().filter(pk=encoder_id).first()
    if encoder is None:
        return error(404, f"no encoder {encoder_id}")
    return encoder_as_dict(encoder)


@router.post("/encoders/{int:encoder_id}/embed", response={202: JobQueued, 400: Error, 403: Error, 404: Error,
                                                           409: Error},
             auth=role("curator"), url_name="encoder_api_embed",
             summary="Embed surveys into one shared embedding set with this encoder (curator)")
def api_encoder_embed(request, encoder_id: int, body: EmbedIn):
    encoder = Encoder.objects.filter(pk=encoder_id).first()
    if encoder is None:
        return error(404, f"no encoder {encoder_id}")
    if encoder.status != ArtifactStatus.READY:
        return error(409, f"encoder {encoder.pk} is {encoder.status}; only ready encoders embed")
    form = EmbedForm({"surveys": body.surveys}, encoder=encoder)
    if not form.is_valid():
        return error(400, " ".join(e for errs in form.errors.values() for e in errs))
    return _queued(service.launch_embedding(encoder, form.cleaned_data["surveys"], user=request.user))
