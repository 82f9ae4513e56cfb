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
