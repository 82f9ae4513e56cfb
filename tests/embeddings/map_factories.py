"""Embedding sets and maps for the map/search tests: rows plus real files in DATA_DIR."""
from __future__ import annotations

import numpy as np

from tests.catalog.factories import make_survey
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import EmbeddingSet, Encoder, LatentMap
from webapp.embeddings.services.vectors import write_embedding_set


def clustered_vectors(n: int, dim: int = 8, clusters: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 vectors in `clusters` tight, well-separated directions, and labels (n,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 5
    labels = np.arange(n) % clusters
    return (centres[labels] + rng.normal(scale=0.3, size=(n, dim))).astype(np.float32), labels


def make_embedding_set(survey=None, vectors: np.ndarray | None = None, n: int = 24, dim: int = 8,
                       name: str = "test set", encoder: Encoder | None = None, **survey_kw) -> EmbeddingSet:
    """A ready EmbeddingSet over every galaxy of `survey` (made when None) with given or clustered vectors."""
    survey = survey or make_survey(n=n, **survey_kw)
    ids = np.array(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))
    if vectors is None:
        vectors, _ = clustered_vectors(len(ids), dim)
    encoder = encoder or Encoder.objects.create(name="enc", method="simclr", config={})
    es = EmbeddingSet.objects.create(encoder=encoder, name=name)
    es.surveys.add(survey)
    return write_embedding_set(es, ids, vectors)


def make_latent_map(es: EmbeddingSet, coords: np.ndarray | None = None, seed: int = 0) -> LatentMap:
    """A ready LatentMap with given (N, 2) coords (random in [-10, 10] when None)."""
    from webapp.embeddings.services.maps import write_map_coords
    if coords is None:
        coords = np.random.default_rng(seed).uniform(-10, 10, size=(es.n, 2)).astype(np.float32)
    lm = LatentMap.objects.create(embedding_set=es, params={"n_neighbors": 15}, n=es.n)
    return write_map_coords(lm, coords)
