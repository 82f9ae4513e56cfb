"""Which function runs each job kind, and on which Celery queue.

Queues: ``gpu`` for training and embedding (CUDA when the worker has it),
``cpu`` for evaluation, UMAP, scores and heads, ``default`` for light work.
docker-compose's workers consume exactly these (tests/unit/test_compose.py).
A handler is ``handler(job, progress) -> dict`` and lives in an app's services.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

QUEUES = ("default", "cpu", "gpu")


@dataclass(frozen=True)
class JobKind:
    handler: str  # dotted path to handler(job, progress) -> dict
    queue: str
    label: str


JOB_KINDS: dict[str, JobKind] = {
    "simulate_surveys": JobKind("webapp.catalog.services.simulation.run_simulate_job", "cpu", "Simulate surveys"),
    "ingest": JobKind("webapp.catalog.services.ingest_job.run_ingest_job", "cpu", "Ingest catalogue"),
    "import_embeddings": JobKind("webapp.embeddings.services.external.run_import_job", "cpu",
                                 "Import embeddings"),
    "render_thumbnails": JobKind("webapp.catalog.services.render.run_prerender_job", "default", "Render thumbnails"),
    "train_encoder": JobKind("webapp.embeddings.services.training.run_train_job", "gpu", "Train encoder"),
    "embed": JobKind("webapp.embeddings.services.embedding.run_embed_job", "gpu", "Embed surveys"),
    "evaluate_encoder": JobKind("webapp.embeddings.services.evaluation.run_evaluate_job", "cpu", "Evaluate encoder"),
    "build_index": JobKind("webapp.embeddings.services.index.run_build_index_job", "cpu", "Build search index"),
    "umap": JobKind("webapp.embeddings.services.maps.run_umap_job", "cpu", "Compute UMAP map"),
    "umap_chunk": JobKind("webapp.embeddings.services.maps.run_umap_chunk_job", "cpu", "Place UMAP chunk"),
    "map_tiles": JobKind("webapp.embeddings.services.map_tiles.run_map_tiles_job", "cpu", "Build map tiles"),
    "anomaly_scores": JobKind("webapp.anomalies.services.scoring.run_score_job", "cpu", "Score anomalies"),
    "anomaly_rerank": JobKind("webapp.anomalies.services.ranking.run_rerank_job", "cpu", "Personalised re-rank"),
    "label_round": JobKind("webapp.labeling.services.rounds.run_round_job", "cpu", "Labeling round"),
    "label_refill": JobKind("webapp.labeling.services.queue.run_refill_job", "cpu", "Pick galaxies to label"),
    "label_finetune": JobKind("webapp.labeling.services.finetune.run_finetune_job", "gpu", "Fine-tune encoder for a task"),
    "label_use_embeddings": JobKind("webapp.labeling.services.finetune.run_use_embeddings_job", "default",
                                    "Switch a task to new embeddings"),
    "demo_task": JobKind("webapp.demo.pipeline.run_demo_task_job", "default", "Demo labeling task"),
    "selftest": JobKind("webapp.jobs.selftest.run_selftest", "default", "Worker self-test"),
}


def get_kind(kind: str) -> JobKind:
    try:
        return JOB_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown job kind {kind!r}; known kinds: {sorted(JOB_KINDS)}") from None


def resolve_handler(kind: str):
    module_path, _, name = get_kind(kind).handler.rpartition(".")
    return getattr(import_module(module_path), name)
