"""Encoder rows and their files: checkpoint paths, survey checks, image sources, launching jobs.

Shared by the training, embedding and evaluation jobs and by the encoder pages, so that
"which surveys can this encoder embed" and "where does its checkpoint live" are decided
in one place.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from ml.imagestore import open_store
from ml.sources import ArraySource, StoreSource
from webapp.catalog.models import Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

IN_MEMORY_BYTES = 3 * 2 ** 30  # surveys up to this size are read into RAM once (fast shuffling)


class SurveyProblem(ValueError):
    """The chosen surveys cannot be used together (message names the survey and the reason)."""


def checkpoint_relpath(encoder: Encoder, name: str = "checkpoint.pt") -> str:
    return f"encoders/{encoder.pk}/{name}"


def abspath(relative: str) -> Path:
    return Path(settings.DATA_DIR) / relative


def resolve_surveys(slugs, image_kind: str | None = None, bands: list | None = None) -> list[Survey]:
    """Ready surveys for ``slugs`` (in that order) that share band count, image size and kind.

    With ``image_kind``/``bands`` (an encoder's), the surveys must also match those.
    """
    slugs = [s for s in dict.fromkeys(slugs or []) if s]
    if not slugs:
        raise SurveyProblem("choose at least one survey")
    found = {s.slug: s for s in Survey.objects.filter(slug__in=slugs)}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise SurveyProblem(f"no survey with slug {', '.join(missing)}")
    surveys = [found[s] for s in slugs]
    for s in surveys:
        if s.status != Survey.Status.READY or not s.store_path or not s.n_galaxies:
            raise SurveyProblem(f"survey {s.slug} is {s.status} with {s.n_galaxies} galaxies; it must be ready")
    first = surveys[0]
    for s in surveys[1:]:
        if len(s.bands) != len(first.bands) or s.image_kind != first.image_kind:
            raise SurveyProblem(f"{s.slug} ({s.image_kind}, bands {''.join(s.bands)}) cannot share an encoder with "
                                f"{first.slug} ({first.image_kind}, bands {''.join(first.bands)})")
    if image_kind is not None and first.image_kind != image_kind:
        raise SurveyProblem(f"the encoder was trained on {image_kind} images; {first.slug} holds {first.image_kind}")
    if bands is not None and len(first.bands) != len(bands):
        raise SurveyProblem(f"the encoder expects {len(bands)} bands ({''.join(bands)}); "
                            f"{first.slug} has {len(first.bands)} ({''.join(first.bands)})")
    return surveys


def survey_source(surveys: list[Survey]):
    """All images of the surveys, in survey order then store row order.

    Small enough -> one in-memory ArraySource (contiguous HDF5 reads, ~1 GB/s);
    otherwise a StoreSource that streams blocks.
    """
    paths = [s.store_abspath for s in surveys]
    shapes = []
    for path in paths:
        with open_store(path) as reader:
            shapes.append(reader.shape)
    if len({tuple(s[1:]) for s in shapes}) != 1:
        raise SurveyProblem(f"image stores differ in shape: {[tuple(s[1:]) for s in shapes]}")
    total_bytes = sum(int(np.prod(s)) * 4 for s in shapes)
    if total_bytes > IN_MEMORY_BYTES:
        return StoreSource(paths)
    arrays = []
    for path in paths:
        with open_store(path) as reader:
            arrays.append(np.asarray(reader._ds[:], dtype=np.float32))
    return ArraySource(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))


def galaxy_rows(survey: Survey) -> tuple[np.ndarray, np.ndarray]:
    """(store rows, Galaxy primary keys) of every galaxy of the survey, in store-row order.

    Publishing gives galaxy i store row i, so normally rows == arange(N); a store row
    without a galaxy (never expected, but cheap to tolerate) is simply not embedded.
    """
    pairs = np.array(list(survey.galaxies.order_by("image_index").values_list("image_index", "pk")),
                     dtype=np.int64).reshape(-1, 2)
    if len(pairs) and pairs[-1, 0] >= survey.n_galaxies and pairs[-1, 0] >= (survey.image_shape or [0])[0]:
        raise SurveyProblem(f"survey {survey.slug}: galaxy row {pairs[-1, 0]} lies beyond its image store")
    return pairs[:, 0], pairs[:, 1]


# ----------------------------------------------------------------- launching jobs

def launch_training(params: dict, user=None, title: str = "") -> Job:
    """Queue a train_encoder job (its evaluation and, if asked, embedding follow)."""
    then = []
    if params.pop("embed_after", False):
        then.append({"kind": "embed", "title": f"Embed {', '.join(params['surveys'])} with {params.get('name')}",
                     "params": {"encoder_id": "$parent.encoder_id", "surveys": list(params["surveys"])}})
    with transaction.atomic():
        return create_job("train_encoder", params, user=user,
                          title=title or f"Train encoder {params.get('name', '')} ({params.get('method', 'simclr')})",
                          then=then or None)


def launch_embedding(encoder: Encoder, slugs: list, user=None) -> Job:
    with transaction.atomic():
        return create_job("embed", {"encoder_id": encoder.pk, "surveys": list(slugs)}, user=user,
                          title=f"Embed {', '.join(slugs)} with {encoder.name}")


def launch_evaluation(encoder: Encoder, user=None, parent: Job | None = None, params: dict | None = None) -> Job:
    with transaction.atomic():
        return create_job("evaluate_encoder", {"encoder_id": encoder.pk, **(params or {})}, user=user,
                          title=f"Evaluate {encoder.name}", parent=parent)


def ready_embedding_sets(encoder: Encoder):
    return encoder.embedding_sets.filter(status=ArtifactStatus.READY).prefetch_related("surveys")


def delete_encoder_files(encoder: Encoder) -> None:
    """Remove the encoder's checkpoint directory (embedding sets keep their own files)."""
    import shutil

    shutil.rmtree(abspath(f"encoders/{encoder.pk}"), ignore_errors=True)


__all__ = ["EmbeddingSet", "Encoder", "SurveyProblem", "abspath", "checkpoint_relpath", "galaxy_rows",
           "launch_embedding", "launch_evaluation", "launch_training", "resolve_surveys", "survey_source"]


# ----------------------------------------------------------------- checkpoints trained elsewhere

def register_upload(uploaded, name: str, survey_slugs=(), user=None) -> Encoder:
    """Validate an uploaded checkpoint and add it as a ready Encoder; CheckpointError says what is wrong.

    The file is streamed to a temporary name, checked completely (format, configs, weights
    against the config, a forward pass, loaded without executing pickled code), and only
    then moved under the new encoder's directory. A bad file leaves no row and no file.
    """
    from ml.checkpoints import load_encoder

    surveys = resolve_surveys(survey_slugs) if survey_slugs else []
    with _staged(uploaded, ".pt") as staging:
        model, preprocess, raw = load_encoder(staging)
        if surveys:
            resolve_surveys(survey_slugs, image_kind=preprocess.image_kind, bands=preprocess.bands)
        train = dict(raw.get("train_config") or {})
        return _add_encoder(staging, model, preprocess, name, str(train.get("method") or "external"), surveys, user,
                            getattr(uploaded, "name", ""), train=train,
                            epochs=int((raw.get("state") or {}).get("epoch", 0) or 0))


@dataclass
class TimmOptions:
    """How imported timm weights are fed (see ml.timm_encoder); defaults follow Zoobot."""
    image_size: int | None = None  # network input side; None = the architecture's default (224)
    greyscale: bool = False  # average the survey's bands into the channel(s) of greyscale weights
    imagenet_norm: bool = False  # ImageNet mean/std (ImageNet weights); Zoobot's weights take [0, 1] as is
    crop_fraction: float = 1.0  # centre fraction of the stored cutout fed to the network
    bands: list | None = None  # survey band names when no survey is given (default R, G, B)


def register_timm(uploaded, arch: str, name: str, survey_slugs=(), options: TimmOptions | None = None,
                  user=None) -> Encoder:
    """Build timm ``arch`` with the uploaded state dict (safetensors or .pth) and add it as a ready Encoder.

    The weights' channel count is read from their first convolution and checked against the
    surveys' bands; the app's checkpoint (config inside) is written and loaded back through
    ml.checkpoints.load_encoder before any row exists. A bad file, an unknown architecture,
    mismatched keys or the wrong channel count raise CheckpointError/SurveyProblem and leave
    no row and no file.
    """
    from ml.checkpoints import export_encoder, load_encoder
    from ml.timm_encoder import encoder_from_weights, timm_preprocess

    options = options or TimmOptions()
    surveys = resolve_surveys(survey_slugs) if survey_slugs else []
    if surveys:
        first = surveys[0]
        if first.image_kind != "rgb":
            raise SurveyProblem(f"timm/Zoobot weights take colour images scaled to [0, 1]; {first.slug} holds "
                                f"{first.image_kind} images")
        bands = list(first.bands)
        where = f"survey {first.slug} has {len(bands)} band{'s' if len(bands) > 1 else ''} {','.join(bands)}"
    else:
        bands = list(options.bands or ["R", "G", "B"])
        where = f"the images have {len(bands)} band{'s' if len(bands) > 1 else ''} {','.join(bands)}"
    with _staged(uploaded, ".weights") as staging:
        model, report = encoder_from_weights(staging, arch, image_size=options.image_size, n_bands=len(bands),
                                             greyscale=options.greyscale, imagenet_norm=options.imagenet_norm,
                                             images_label=where)
        preprocess = timm_preprocess(model.config, bands, options.crop_fraction)
        checkpoint = staging.with_name(staging.name + ".pt")
        try:
            export_encoder(model, preprocess, checkpoint)
            model, preprocess, _ = load_encoder(checkpoint)  # exactly what the embed job will load
            if surveys:
                resolve_surveys(survey_slugs, image_kind=preprocess.image_kind, bands=preprocess.bands)
            return _add_encoder(checkpoint, model, preprocess, name, "timm", surveys, user,
                                getattr(uploaded, "name", ""), timm=report)
        finally:
            checkpoint.unlink(missing_ok=True)


@contextmanager
def _staged(uploaded, suffix: str):
    """The upload streamed to encoders/uploads/<random><suffix>.partial, removed afterwards."""
    staging = abspath(f"encoders/uploads/{uuid.uuid4().hex}{suffix}.partial")
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(staging, "wb") as handle:
            for chunk in uploaded.chunks():
                handle.write(chunk)
        yield staging
    finally:
        staging.unlink(missing_ok=True)


def _add_encoder(checkpoint: Path, model, preprocess, name: str, method: str, surveys, user, uploaded_name: str,
                 train: dict | None = None, epochs: int = 0, **extra) -> Encoder:
    """Create the ready Encoder row and move the checked checkpoint under it, in one transaction."""
    if hasattr(model, "config_dict"):
        encoder_config = model.config_dict()
    else:
        from ml.encoders import config_to_dict
        encoder_config = config_to_dict(model.config)
    with transaction.atomic():
        encoder = Encoder.objects.create(
            name=name[:100], method=method[:20], source=Encoder.Source.UPLOADED,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            status=ArtifactStatus.BUILDING, epochs_done=epochs,
            config={"train": dict(train or {}), "encoder": {**encoder_config, "feature_dim": model.feature_dim},
                    "preprocess": preprocess.to_dict(), "uploaded_file": uploaded_name,
                    "parameters": sum(p.numel() for p in model.parameters()), **extra})
        encoder.surveys.set(surveys)
        encoder.checkpoint_path = checkpoint_relpath(encoder, "encoder.pt")
        final = abspath(encoder.checkpoint_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(checkpoint, final)
        encoder.status = ArtifactStatus.READY
        encoder.save(update_fields=["checkpoint_path", "status"])
    return encoder
