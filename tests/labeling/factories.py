"""Tiny labeling fixtures: surveys, an embedding set whose vectors separate the classes, a task."""
from __future__ import annotations

import numpy as np

from tests.catalog.factories import make_survey
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import EmbeddingSet, Encoder
from webapp.embeddings.services.vectors import write_embedding_set
from webapp.labeling.models import Task

CLASSES = [{"name": "elliptical", "key": "1"}, {"name": "spiral", "key": "2"},
           {"name": "edge-on", "key": "3"}, {"name": "merger", "key": "4"}]


def true_class(galaxy: Galaxy) -> int:
    """The class the embedding encodes for this galaxy (its image row modulo 4)."""
    return galaxy.image_index % 4


def class_vectors(n: int, dim: int = 8, seed: int = 0, shift: float = 0.0, noise: float = 0.35) -> np.ndarray:
    """(n, dim) float32: row i near the centre of class i % 4 (+ a survey shift)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(4, dim)) * 2.0
    return (centres[np.arange(n) % 4] + shift + rng.normal(scale=noise, size=(n, dim))).astype(np.float32)


def make_embedding_set(surveys, dim: int = 8, shifts=None, name: str = "test set") -> EmbeddingSet:
    encoder = Encoder.objects.create(name="test encoder", method="simclr", config={})
    es = EmbeddingSet.objects.create(encoder=encoder, name=name)
    es.surveys.set(surveys)
    ids, vecs = [], []
    for k, survey in enumerate(surveys):
        galaxies = list(Galaxy.objects.filter(survey=survey).order_by("image_index"))
        shift = (shifts or [0.0] * len(surveys))[k]
        ids += [g.pk for g in galaxies]
        vecs.append(class_vectors(len(galaxies), dim, seed=k, shift=shift))
    return write_embedding_set(es, np.asarray(ids), np.concatenate(vecs))


def make_task(n: int = 40, name: str = "Morphology", surveys=None, embedding_set=None, **fields) -> Task:
    """A classification task over one tiny survey (or the given ones) with its embedding set."""
    if surveys is None:
        surveys = [make_survey(name=f"{name} survey", slug=f"lab-{abs(hash(name)) % 10**6}", n=n, size=16)]
    es = embedding_set or make_embedding_set(surveys)
    defaults = dict(kind=Task.Kind.CLASSIFICATION, classes=CLASSES, embedding_set=es, strategy="margin",
                    batch_size=8, round_every=0, cold_start_labels=8,
                    head_config={"kind": "logistic"})
    defaults.update(fields)
    task = Task.objects.create(name=name, **defaults)
    task.surveys.set(surveys)
    return task


def make_encoder_task(n: int = 24, name: str = "FT task", slug: str = "ft"):
    """A task on a survey embedded by a real (tiny, untrained) encoder checkpoint: what the
    fine-tuning chain needs. Returns (task, galaxy ids in image order)."""
    from ml.augment import fit_preprocess
    from ml.checkpoints import export_encoder
    from ml.encoders import encoder_from_config, preset_config
    from webapp.catalog.services.store_cache import read_images
    from webapp.embeddings.services.encoders import abspath, checkpoint_relpath

    survey = make_survey(name=f"{name} survey", slug=slug, n=n, size=16)
    images = read_images(survey.store_abspath, list(range(n)))
    pre = fit_preprocess(images, "flux", ["g", "r", "i"], image_size=32, crop_fraction=1.0)
    model = encoder_from_config(preset_config("small", image_size=32, width=8), seed=0)
    enc = Encoder.objects.create(name="tiny", method="simclr", status="ready", config={"train": {"preset": "small"}})
    enc.surveys.set([survey])
    enc.checkpoint_path = checkpoint_relpath(enc)
    abspath(enc.checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
    export_encoder(model, pre, abspath(enc.checkpoint_path))
    enc.save()
    es = EmbeddingSet.objects.create(encoder=enc, name="tiny set")
    es.surveys.set([survey])
    ids = list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("pk", flat=True))
    write_embedding_set(es, np.asarray(ids), class_vectors(n))
    return make_task(name=name, surveys=[survey], embedding_set=es), ids
