"""Train a tiny encoder, embed and evaluate through a real ``celery worker``.

Killing it mid-training is in tests/faults/test_worker_killed_heavy_jobs.py."""
from __future__ import annotations

import numpy as np
import pytest

from ml.imagestore import open_store
from tests.catalog.factories import make_survey
from tests.faults.conftest import wait_until
from tests.integration.conftest import wait_for_job
from webapp.embeddings.models import EmbeddingSet, Encoder
from webapp.embeddings.services import encoding
from webapp.embeddings.services.vectors import load_embedding_set, rows_for
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLASSES = ("elliptical", "spiral", "edge_on")
TINY = {"width": 4, "stages": [1, 1], "proj_hidden": 16, "proj_dim": 8}


def tiny_train(epochs: int, **extra) -> dict:
    return {"surveys": ["sim-tiny"], "name": "tiny", "method": "simclr", "preset": "small", "epochs": epochs,
            "seed": 0, "batch_size": 8, "image_size": 32, "encoder": TINY, **extra}


def children(job, kind):
    return Job.objects.filter(parent=job, kind=kind)


def test_worker_trains_embeds_and_evaluates_a_usable_embedding_set(celery_worker_proc):
    survey = make_survey(name="sim-tiny", slug="sim-tiny", n=48, metadata=lambda i: {"gz_label": CLASSES[i % 3]})
    train = create_job("train_encoder", tiny_train(2), then=[
        {"kind": "embed", "params": {"encoder_id": "$parent.encoder_id", "surveys": ["sim-tiny"]}}])
    done = wait_for_job(train.pk, timeout=240, proc=celery_worker_proc)
    assert done.status == "succeeded", done.error
    assert done.queue == "gpu" and len(done.metrics["loss"]) >= 2 and len(done.metrics["epoch_loss"]) == 2
    encoder = Encoder.objects.get(pk=done.result["encoder_id"])
    assert (encoder.status, encoder.epochs_done, encoder.config["device"]) == ("ready", 2, "cpu")

    wait_until(lambda: children(done, "embed").exists(), 30, "the embed follow-up")
    embed = wait_for_job(children(done, "embed").get().pk, timeout=240, proc=celery_worker_proc)
    assert embed.status == "succeeded", embed.error
    es = EmbeddingSet.objects.get(pk=embed.result["embedding_set_id"])
    assert (es.status, es.n, es.dim, es.encoder_id) == ("ready", 48, 8, encoder.pk)
    ids, vectors, _ = load_embedding_set(es)
    galaxy = survey.galaxies.get(image_index=5)
    row = rows_for(es, [galaxy.pk])[0]
    # the web-side interface puts a cutout into the same space as the worker's embedding set
    with open_store(survey.store_abspath) as reader:
        pixels = reader.read_many([5])
    np.testing.assert_allclose(encoding.embed_images(encoder, pixels)[0], vectors[row], atol=1e-5)

    wait_until(lambda: children(done, "evaluate_encoder").exists(), 30, "the evaluation follow-up")
    evaluation = wait_for_job(children(done, "evaluate_encoder").get().pk, timeout=240, proc=celery_worker_proc)
    assert evaluation.status == "succeeded" and evaluation.queue == "cpu", evaluation.error
    report = Encoder.objects.get(pk=encoder.pk).metrics["evaluation"]["sim-tiny"]
    assert set(report["results"]) == {"ssl", "pca_pixels", "random_encoder"} and report["n_labelled"] == 48
