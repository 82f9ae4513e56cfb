"""train_encoder / embed / evaluate_encoder job handlers, run in-process on a tiny survey."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.checkpoints import read_checkpoint
from tests.catalog.factories import make_survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services import embedding, evaluation, training
from webapp.embeddings.services.encoders import abspath
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

SIM_CLASSES = ("elliptical", "spiral", "edge_on")
TINY = {"width": 4, "stages": [1, 1], "proj_hidden": 16, "proj_dim": 8}


def labelled_survey(slug="sim-tiny", n=30, **kw):
    """A survey labelled like the simulated ones: the volunteer consensus gz_label (a catalogue
    column).  Its truth says "merger" everywhere, so an evaluation that read truth would show it."""
    return make_survey(name=slug, slug=slug, n=n, metadata=lambda i: {"gz_label": SIM_CLASSES[i % 3]},
                       truth=lambda i: {"class": "merger"}, **kw)


def train_params(slugs, epochs=2, **extra):
    return {"surveys": list(slugs), "name": "tiny", "method": "simclr", "preset": "small", "epochs": epochs,
            "seed": 3, "batch_size": 8, "image_size": 32, "encoder": TINY, **extra}


def run(kind, params, **kw) -> Job:
    job = services.create_job(kind, params, dispatch=False, **kw)
    services.execute_job(job.pk, "test-worker")
    return Job.objects.get(pk=job.pk)


class KillAt(services.Progress):
    """A progress callback that dies like a lost worker once training reaches ``epoch``."""

    def __init__(self, job, epoch: int):
        super().__init__(job, interval=0.0)
        self.epoch = epoch

    def __call__(self, done, total, message=""):
        super().__call__(done, total, message)
        if message.startswith(f"epoch {self.epoch}/") and "done" not in message:
            raise SystemExit("worker killed")  # not an Exception: the handler's cleanup must not run


def test_train_job_makes_ready_encoder_with_live_loss_and_follow_up_evaluation():
    labelled_survey()
    job = run("train_encoder", train_params(["sim-tiny"]))
    assert job.status == "succeeded", job.error
    encoder = Encoder.objects.get(pk=job.result["encoder_id"])
    assert (encoder.status, encoder.epochs_done, encoder.method) == ("ready", 2, "simclr")
    assert encoder.training_seconds > 0 and encoder.train_job_id == job.pk
    assert [s.slug for s in encoder.surveys.all()] == ["sim-tiny"]
    assert encoder.config["train"]["epochs"] == 2 and encoder.config["encoder"]["feature_dim"] == 8
    steps = [p[0] for p in job.metrics["loss"]]
    assert steps == sorted(steps) and steps[-1] == 2 * (30 // 8)  # 3 steps per epoch, two epochs
    assert [p[0] for p in job.metrics["epoch_loss"]] == [1, 2]
    saved = read_checkpoint(abspath(encoder.checkpoint_path))
    assert saved["train_config"]["seed"] == 3 and saved["state"]["epoch"] == 2
    (child,) = job.children.all()
    assert (child.kind, child.params["encoder_id"]) == ("evaluate_encoder", encoder.pk)


def test_bad_params_fail_with_readable_errors():
    labelled_survey()
    job = run("train_encoder", train_params(["sim-tiny"], method="moco9"))
    assert job.status == "failed" and "method 'moco9' is not one of" in job.message
    job = run("train_encoder", train_params(["nope"]))
    assert job.status == "failed" and "no survey with slug nope" in job.message
    make_survey(name="two bands", slug="two", bands=("g", "r"))
    job = run("train_encoder", train_params(["sim-tiny", "two"]))
    assert job.status == "failed" and "cannot share an encoder" in job.message
    assert not Encoder.objects.exists()


def test_redelivered_job_resumes_from_last_checkpoint():
    labelled_survey()
    job = services.create_job("train_encoder", train_params(["sim-tiny"], epochs=3), dispatch=False)
    job = services.claim_job(job.pk, "doomed")
    with pytest.raises(SystemExit):
        training.run_train_job(job, KillAt(job, epoch=2))
    encoder = Encoder.objects.get(train_job=job)
    assert (encoder.status, encoder.epochs_done) == ("building", 1)   # a dead worker leaves it building
    Job.objects.filter(pk=job.pk).update(attempts=2)
    result = training.run_train_job(Job.objects.get(pk=job.pk), services.Progress(Job.objects.get(pk=job.pk)))
    assert result["encoder_id"] == encoder.pk and result["resumed_from_epoch"] == 1
    assert Encoder.objects.get(pk=encoder.pk).epochs_done == 3 and Encoder.objects.count() == 1


def test_cancel_keeps_checkpoint_and_resume_continues_it():
    labelled_survey()
    job = services.create_job("train_encoder", train_params(["sim-tiny"], epochs=3), dispatch=False)
    job = services.claim_job(job.pk, "w")
    Job.objects.filter(pk=job.pk).update(cancel_requested=False)

    class CancelAt2(services.Progress):
        def __call__(self, done, total, message=""):
            if message.startswith("epoch 2/"):
                raise services.JobCancelled("cancelled by a user")
            super().__call__(done, total, message)

    with pytest.raises(services.JobCancelled):
        training.run_train_job(job, CancelAt2(job))
    encoder = Encoder.objects.get(train_job=job)
    assert encoder.status == "failed" and encoder.metrics["stopped"]["resumable"] is True
    assert encoder.metrics["stopped"]["epochs_done"] == 1
    first_weights = read_checkpoint(abspath(encoder.checkpoint_path))["model"]
    resumed = run("train_encoder", {**train_params(["sim-tiny"], epochs=3), "encoder_id": encoder.pk})
    assert resumed.status == "succeeded", resumed.error
    assert resumed.result["resumed_from_epoch"] == 1 and resumed.result["encoder_id"] == encoder.pk
    encoder.refresh_from_db()
    assert (encoder.status, encoder.epochs_done) == ("ready", 3) and "stopped" not in encoder.metrics
    final = read_checkpoint(abspath(encoder.checkpoint_path))["model"]
    assert not torch.equal(first_weights["backbone.stem.0.weight"], final["backbone.stem.0.weight"])


def test_embed_job_twice_gives_same_checksum_and_usable_set():
    labelled_survey()
    labelled_survey("sim-tiny-2", n=12, seed=5)
    train = run("train_encoder", train_params(["sim-tiny"], epochs=1, evaluate=False))
    params = {"encoder_id": train.result["encoder_id"], "surveys": ["sim-tiny", "sim-tiny-2"]}
    first, second = run("embed", params), run("embed", params)
    assert first.status == second.status == "succeeded", first.error
    assert first.result["checksum"] == second.result["checksum"]
    es = EmbeddingSet.objects.get(pk=first.result["embedding_set_id"])
    assert (es.status, es.n, es.dim) == ("ready", 42, 8)
    assert sorted(s.slug for s in es.surveys.all()) == ["sim-tiny", "sim-tiny-2"]
    ids, vectors, row_of = load_embedding_set(es)
    from webapp.catalog.models import Galaxy
    expected = list(Galaxy.objects.filter(survey__slug="sim-tiny").order_by("image_index").values_list("pk", flat=True)) + \
        list(Galaxy.objects.filter(survey__slug="sim-tiny-2").order_by("image_index").values_list("pk", flat=True))
    assert ids.tolist() == expected
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_refuses_unready_encoder_and_wrong_bands():
    labelled_survey()
    make_survey(name="two bands", slug="two", bands=("g", "r"))
    train = run("train_encoder", train_params(["sim-tiny"], epochs=1, evaluate=False))
    job = run("embed", {"encoder_id": train.result["encoder_id"], "surveys": ["two"]})
    assert job.status == "failed" and "expects 3 bands" in job.message
    Encoder.objects.filter(pk=train.result["encoder_id"]).update(status=ArtifactStatus.BUILDING)
    job = run("embed", {"encoder_id": train.result["encoder_id"], "surveys": ["sim-tiny"]})
    assert job.status == "failed" and "only ready encoders embed" in job.message


def test_evaluation_stores_knn_and_probe_against_baselines():
    labelled_survey(n=60)
    train = run("train_encoder", train_params(["sim-tiny"], epochs=1))
    (child,) = Job.objects.filter(parent_id=train.pk)
    services.execute_job(child.pk, "w")
    child.refresh_from_db()
    assert child.status == "succeeded", child.error
    metrics = Encoder.objects.get(pk=train.result["encoder_id"]).metrics["evaluation"]["sim-tiny"]
    assert metrics["label"] == "metadata:gz_label" and metrics["classes"] == list(SIM_CLASSES)
    assert metrics["class_counts"] == {"elliptical": 20, "spiral": 20, "edge_on": 20}
    assert set(metrics["results"]) == {"ssl", "random_encoder", "pca_pixels"}
    for res in metrics["results"].values():
        for probe in ("knn", "linear"):
            assert 0.0 <= res[probe]["balanced_accuracy"] <= 1.0
            assert set(res[probe]["per_class"]) == set(SIM_CLASSES)
    assert set(child.result["balanced_accuracy"]["sim-tiny"]) == {"ssl", "random_encoder", "pca_pixels"}


def test_simulated_volunteer_consensus_is_the_label_and_uncertain_is_unlabelled():
    survey = make_survey(name="sim", slug="sim", n=5, truth=lambda i: {"class": "merger"},
                         metadata=lambda i: {"gz_label": ["spiral", "uncertain", "edge_on", "spiral", "merger"][i]})
    assert evaluation.label_column(survey) == "metadata:gz_label"
    y, classes = evaluation.labels_for(survey, "metadata:gz_label", np.arange(5))
    assert classes == ["elliptical", "spiral", "edge_on", "merger"]
    assert y.tolist() == [1, -1, 2, 1, 3]


def test_truth_columns_are_refused_as_evaluation_labels():
    survey = make_survey(name="sim", slug="sim", n=4, truth=lambda i: {"class": "spiral"})
    assert evaluation.label_column(survey) is None   # truth alone is no label source
    with pytest.raises(ValueError, match="public catalogue column"):
        evaluation.labels_for(survey, "truth:class", np.arange(4))


def test_gz1_labels_map_to_three_classes_and_skip_artifacts():
    survey = make_survey(name="gz", slug="gz", n=8, image_kind="rgb",
                         metadata=lambda i: {"gz1_class": [0, 1, 2, 3, 4, 5, 0, 3][i]})
    assert evaluation.label_column(survey) == "gz1"
    y, classes = evaluation.labels_for(survey, "gz1", np.arange(8))
    assert classes == ["elliptical", "spiral", "edge_on"]
    assert y.tolist() == [0, 1, 1, 2, -1, -1, 0, 2]


def test_rgb_jpeg_survey_trains_embeds_and_evaluates_on_galaxy_zoo_classes():
    make_survey(name="SDSS GZ1", slug="sdss-gz1", n=40, image_kind="rgb", bands=("R", "G", "B"),
                metadata=lambda i: {"gz1_class": [0, 1, 2, 3, 0][i % 5]})
    train = run("train_encoder", train_params(["sdss-gz1"], epochs=1))
    assert train.status == "succeeded", train.error
    encoder = Encoder.objects.get(pk=train.result["encoder_id"])
    assert encoder.config["preprocess"]["image_kind"] == "rgb" and encoder.config["preprocess"]["bands"] == ["R", "G", "B"]
    (child,) = Job.objects.filter(parent_id=train.pk)
    services.execute_job(child.pk, "w")
    report = Encoder.objects.get(pk=encoder.pk).metrics["evaluation"]["sdss-gz1"]
    assert report["label"] == "gz1" and report["class_counts"] == {"elliptical": 16, "spiral": 16, "edge_on": 8}
    embed = run("embed", {"encoder_id": encoder.pk, "surveys": ["sdss-gz1"]})
    assert embed.status == "succeeded" and embed.result["n"] == 40
    flux = make_survey(name="flux", slug="flux-survey")
    refused = run("embed", {"encoder_id": encoder.pk, "surveys": [flux.slug]})
    assert refused.status == "failed" and "trained on rgb images" in refused.message


def test_streamed_embed_job_matches_the_in_memory_path_bit_for_bit(monkeypatch):
    """The job writes encoder batches straight into the published .npy; the vectors and the
    checksum are exactly those of embedding every survey in RAM and concatenating."""
    from ml.checkpoints import load_encoder
    from ml.embed import embed_source
    from ml.sources import StoreSource
    from webapp.catalog.models import Survey
    from webapp.embeddings.services.encoders import galaxy_rows
    from webapp.embeddings.services.vectors import sha256_array

    labelled_survey()
    labelled_survey("sim-tiny-2", n=12, seed=5)
    train = run("train_encoder", train_params(["sim-tiny"], epochs=1, evaluate=False))
    # Several blocks per survey, a short last one; the in-memory path below uses the same batch
    # size, since CPU kernels may round differently for another batch shape.
    monkeypatch.setattr(embedding, "BATCH", 7)
    job = run("embed", {"encoder_id": train.result["encoder_id"], "surveys": ["sim-tiny", "sim-tiny-2"]})
    assert job.status == "succeeded", job.error
    es = EmbeddingSet.objects.get(pk=job.result["embedding_set_id"])
    _, vectors, _ = load_embedding_set(es)
    model, pre, _ = load_encoder(abspath(Encoder.objects.get(pk=train.result["encoder_id"]).checkpoint_path))
    old = []
    for slug in ("sim-tiny", "sim-tiny-2"):
        survey = Survey.objects.get(slug=slug)
        rows, _ = galaxy_rows(survey)
        source = StoreSource([survey.store_abspath])
        old.append(embed_source(model, pre, source, embedding.BATCH, device=torch.device("cpu"))[rows])
        source.close()
    old = np.concatenate(old)
    np.testing.assert_array_equal(np.asarray(vectors), old)
    assert es.checksum == sha256_array(old) == job.result["checksum"]
    assert not list((abspath(es.vectors_path)).parent.glob("*.partial"))
