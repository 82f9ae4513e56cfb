"""A worker SIGKILLed in the middle of training, embedding or UMAP: the job is retried and
finishes. Training resumes from its last checkpoint; no partial array is ever marked ready.

The kill lands while the artifact's row exists and its file is being computed; until the
retry finishes, the row must not say ready and no vectors/coordinates may be readable as
if they were whole.
"""
import numpy as np
import pytest
from django.conf import settings

from ml.augment import fit_preprocess
from ml.checkpoints import export_encoder
from ml.encoders import encoder_from_config, preset_config
from ml.imagestore import open_store
from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set
from tests.faults.conftest import wait_for_job, wait_until
from tests.integration.test_train_embed_worker import CLASSES, tiny_train
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder, LatentMap
from webapp.embeddings.services import encoding, maps
from webapp.embeddings.services.vectors import load_embedding_set, rows_for
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]


def _slow_encoder(survey) -> Encoder:
    """The large preset at 64 px: slow enough on CPU (about a hundred images/s) to be killed mid-way."""
    with open_store(survey.store_abspath) as reader:
        sample = reader.read_many(list(range(32)))
    pre = fit_preprocess(sample, "flux", ["g", "r", "i"], 64)
    model = encoder_from_config(preset_config("large", in_channels=3, image_size=64), seed=0)
    encoder = Encoder.objects.create(name="large", method="simclr", config={"preset": "large"})
    encoder.checkpoint_path = f"encoders/{encoder.pk}/encoder.pt"
    export_encoder(model, pre, settings.DATA_DIR / encoder.checkpoint_path)
    encoder.status = ArtifactStatus.READY
    encoder.save(update_fields=["checkpoint_path", "status"])
    return encoder


def _progress(job_id) -> tuple[str, float]:
    job = Job.objects.get(pk=job_id)
    assert job.status not in ("failed", "succeeded", "cancelled"), (job.status, job.error, job.message)
    return job.status, job.progress


def _assert_not_ready(model, job_id):
    row = model.objects.filter(job_id=job_id).first()
    assert row is None or row.status != ArtifactStatus.READY, f"{model.__name__} marked ready after a kill"


def test_embedding_killed_mid_way_is_retried_and_never_half_ready(start_worker):
    survey = make_survey(name="sim-kill", slug="sim-kill", n=2000, size=64)
    encoder = _slow_encoder(survey)
    worker = start_worker("embedder")
    job = create_job("embed", {"encoder_id": encoder.pk, "surveys": ["sim-kill"]})
    wait_until(lambda: _progress(job.pk)[0] == "running" and 0.1 <= _progress(job.pk)[1] < 0.8, 240,
               "the embedding to be under way", poll=0.05)
    worker.kill_pool_child()
    _assert_not_ready(EmbeddingSet, job.pk)

    done = wait_for_job(job.pk, timeout=400, proc=worker.proc)
    assert done.status == "succeeded", (done.message, worker.log_path.read_text()[-3000:])
    assert done.attempts == 2
    (es,) = EmbeddingSet.objects.filter(job=job)  # the retry reused the row, no orphan
    assert (es.status, es.n) == (ArtifactStatus.READY, 2000)
    ids, vectors, _ = load_embedding_set(es)      # verifies the stored checksum
    assert vectors.shape == (2000, es.dim) and np.isfinite(vectors).all()
    with open_store(survey.store_abspath) as reader:
        pixels = reader.read_many([0, 1999])
    rows = rows_for(es, list(survey.galaxies.filter(image_index__in=[0, 1999]).order_by("image_index")
                             .values_list("pk", flat=True)))
    np.testing.assert_allclose(encoding.embed_images(encoder, pixels), vectors[rows], atol=1e-4)


def test_umap_killed_mid_way_is_retried_and_never_half_ready(start_worker):
    vectors, labels = clustered_vectors(1500, 16, clusters=3)
    es = make_embedding_set(vectors=vectors, n=1500)
    worker = start_worker("mapper")
    job = create_job("umap", {"embedding_set_id": es.pk, "config": {"n_neighbors": 10, "n_epochs": 400,
                                                                      "seed": 0}})
    wait_until(lambda: _progress(job.pk)[0] == "running" and LatentMap.objects.filter(job=job).exists(),
               120, "the map job to start", poll=0.05)
    worker.kill_pool_child()
    _assert_not_ready(LatentMap, job.pk)

    done = wait_for_job(job.pk, timeout=400, proc=worker.proc)
    assert done.status == "succeeded", (done.message, worker.log_path.read_text()[-3000:])
    assert done.attempts == 2
    (lm,) = LatentMap.objects.filter(job=job)
    assert lm.status == ArtifactStatus.READY
    coords = maps.load_coords(lm)
    assert coords.shape == (1500, 2) and np.isfinite(coords).all()
    assert not list((settings.DATA_DIR / lm.coords_path).parent.glob("*.partial"))
    centres = np.stack([coords[labels == k].mean(0) for k in range(3)])
    assert np.linalg.norm(centres[0] - centres[1]) > 2  # a real map, not zeros


def test_killed_worker_resumes_training_from_the_last_checkpoint(start_worker):
    survey = make_survey(name="sim-tiny", slug="sim-tiny", n=160, metadata=lambda i: {"gz_label": CLASSES[i % 3]})
    worker = start_worker("trainer")
    job = create_job("train_encoder", tiny_train(6, evaluate=False))
    wait_until(lambda: len(Job.objects.get(pk=job.pk).metrics.get("epoch_loss", [])) >= 2, 240,
               "two finished epochs", poll=0.05)
    worker.kill_pool_child()
    done = wait_for_job(job.pk, timeout=300, proc=worker.proc)
    assert done.status == "succeeded", (done.message, worker.log_path.read_text()[-3000:])
    assert done.attempts == 2 and done.result["resumed_from_epoch"] >= 2
    assert Encoder.objects.count() == 1 and Encoder.objects.get().epochs_done == 6
    epochs = [p[0] for p in done.metrics["epoch_loss"]]
    assert epochs == [1, 2, 3, 4, 5, 6]                  # no epoch recorded twice after the resume
    steps = [p[0] for p in done.metrics["loss"]]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    with open_store(survey.store_abspath) as reader:  # the final weights load and give finite vectors
        vectors = encoding.embed_images(Encoder.objects.get(), reader.read_many([0, 1, 2]))
    assert vectors.shape == (3, 8) and np.isfinite(vectors).all() and np.ptp(vectors, axis=0).max() > 0
