"""A scored embedding set for anomaly tests: survey + EmbeddingSet + ScoreSet, all real files."""
from __future__ import annotations

import numpy as np

from ml.anomaly import AnomalyConfig
from tests.catalog.factories import make_survey
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.scoring import score_embedding_set
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import EmbeddingSet, Encoder
from webapp.embeddings.services.vectors import write_embedding_set

FAST = dict(iforest_trees=50, gmm_components=2, knn_k=5, lof_k=5)  # small and quick on 60 rows


def blob_vectors(n_bulk: int = 48, n_blob: int = 6, d: int = 8, seed: int = 0) -> np.ndarray:
    """(n_bulk + 2 n_blob, d): a bulk along e0, blob A along e1, blob B along e2 (cosine-separated)."""
    rng = np.random.default_rng(seed)
    e = np.eye(d)
    return np.concatenate([5 * e[0] + rng.normal(size=(n_bulk, d)),
                           5 * e[1] + 0.3 * rng.normal(size=(n_blob, d)),
                           5 * e[2] + 0.3 * rng.normal(size=(n_blob, d))]).astype(np.float32)


def make_embedding_set(vectors: np.ndarray, slug: str = "ano", name: str = "Anomaly survey",
                       size: int = 16) -> tuple[EmbeddingSet, list[int]]:
    survey = make_survey(name=name, slug=slug, n=len(vectors), size=size)
    ids = list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))
    encoder = Encoder.objects.create(name="test encoder", method="simclr", config={})
    es = EmbeddingSet.objects.create(encoder=encoder, name=f"{slug} set")
    es.surveys.add(survey)
    write_embedding_set(es, np.array(ids), vectors)
    return es, ids


def make_score_set(vectors: np.ndarray | None = None, methods=("iforest", "knn", "lof"), **kwargs):
    """(ScoreSet ready, galaxy ids in row order)."""
    vectors = blob_vectors() if vectors is None else vectors
    es, ids = make_embedding_set(vectors, **kwargs)
    cfg = AnomalyConfig(methods=tuple(methods), **FAST)
    score_set = ScoreSet.objects.create(embedding_set=es)
    score_embedding_set(score_set, cfg)
    score_set.refresh_from_db()
    return score_set, ids
