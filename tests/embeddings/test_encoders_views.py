"""Encoder pages and JSON API: roles, train form validation, checkpoint upload, embed/evaluate/resume."""
from __future__ import annotations

import html
import io
import json

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.utils import CaptureQueriesContext
from django.db import connection

from ml.augment import fit_preprocess
from ml.checkpoints import encoder_payload
from ml.encoders import encoder_from_config, preset_config
from tests.catalog.factories import galaxy_images, make_survey
from tests.embeddings.encoder_factories import TINY, make_encoder
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, Encoder
from webapp.embeddings.services.vectors import write_embedding_set
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

TRAIN_POST = {"name": "my encoder", "surveys": ["test"], "method": "simclr", "preset": "small", "image_size": 32,
              "crop_fraction": 0.75, "epochs": 3, "batch_size": 8, "lr": 0.002, "temperature": 0.2, "seed": 1,
              "rotate": "on", "flip": "on", "max_shift": 0.05, "scale_min": 0.9, "scale_max": 1.1,
              "blur_fwhm_max": 1.0, "noise_max": 1.0, "flux_scale_sigma": 0.05, "reddening_max_ebv": 0.02,
              "embed_after": "on"}
WRITE_URLS = ["/encoders/train/", "/encoders/upload/", "/encoders/{id}/embed", "/encoders/{id}/evaluate",
              "/encoders/{id}/resume"]


def checkpoint_bytes(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def tiny_payload(bands=3) -> dict:
    images = galaxy_images(16, bands, 16)
    pre = fit_preprocess(images, "flux", list("gri")[:bands] if bands <= 3 else [f"b{i}" for i in range(bands)], 32)
    model = encoder_from_config(preset_config("small", in_channels=bands, image_size=32, **TINY), seed=0)
    return encoder_payload(model, pre)


@pytest.mark.parametrize("role", ["anonymous", "viewer", "labeler"])
def test_write_endpoints_refuse_non_curators(role_clients, role):
    make_survey()
    encoder = make_encoder()
    client = role_clients[role]
    for url in WRITE_URLS:
        response = client.post(url.format(id=encoder.pk), TRAIN_POST)
        assert response.status_code in ((302,) if role == "anonymous" else (403,)), url
    assert client.get("/encoders/train/").status_code in ((302,) if role == "anonymous" else (403,))
    api = client.post("/api/encoders/", json.dumps({"surveys": ["test"], "name": "x"}), content_type="application/json")
    assert api.status_code == (401 if role == "anonymous" else 403)  # the API answers JSON, no redirect
    embed = client.post(f"/api/encoders/{encoder.pk}/embed", json.dumps({"surveys": ["test"]}),
                        content_type="application/json")
    assert embed.status_code == (401 if role == "anonymous" else 403)
    assert Job.objects.count() == 0 and Encoder.objects.count() == 1


def test_viewers_can_read_pages_and_api(role_clients):
    encoder = make_encoder(name="readable")
    client = role_clients["viewer"]
    page = client.get("/encoders/")
    assert page.status_code == 200 and b"readable" in page.content and b"Train encoder" not in page.content
    assert client.get(f"/encoders/{encoder.pk}/").status_code == 200
    data = client.get("/api/encoders/").json()
    assert [e["name"] for e in data["encoders"]] == ["readable"]
    assert client.get(f"/api/encoders/{encoder.pk}/").json()["dim"] is None  # factory rows carry no config
    assert client.get("/api/encoders/999/").status_code == 404


def test_curator_train_form_queues_job_with_followups(curator_client):
    make_survey(n=12)
    response = curator_client.post("/encoders/train/", TRAIN_POST)
    job = Job.objects.get(kind="train_encoder")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["surveys"] == ["test"] and job.params["epochs"] == 3 and job.params["method"] == "simclr"
    assert job.params["augment"]["blur_fwhm_max"] == 1.0 and job.params["augment"]["rotate"] is True
    assert [t["kind"] for t in job.params["_then"]] == ["embed"]
    assert job.queue == "gpu"


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 64}, "batch size 64 is larger than the 12 galaxies"),
    ({"surveys": ["test", "two"]}, "cannot share an encoder"),
    ({"scale_min": 1.2, "scale_max": 1.0}, "Zoom to"),
    ({"image_size": 128}, "less than or equal to 96"),
    ({"epochs": 0}, "greater than or equal to 1"),
    ({"surveys": []}, "This field is required"),
])
def test_train_form_shows_clear_errors(curator_client, change, message):
    make_survey(n=12)
    make_survey(name="two bands", slug="two", bands=("g", "r"))
    response = curator_client.post("/encoders/train/", {**TRAIN_POST, **change})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_api_train_validates_and_queues(curator_client):
    make_survey(n=12)
    bad = curator_client.post("/api/encoders/", json.dumps({"surveys": ["test"], "name": "x", "method": "magic"}),
                              content_type="application/json")
    assert bad.status_code == 400 and "method 'magic'" in bad.json()["error"]
    unknown = curator_client.post("/api/encoders/", json.dumps({"surveys": ["test"], "name": "x", "gpu": 4, "batch_size": 8}),
                                  content_type="application/json")
    assert unknown.status_code == 400 and "gpu is not a known field" in unknown.json()["error"]
    assert curator_client.post("/api/encoders/", "{nope", content_type="application/json").status_code == 400
    ok = curator_client.post("/api/encoders/", json.dumps({"surveys": ["test"], "name": "x", "batch_size": 8}),
                             content_type="application/json")
    assert ok.status_code == 202 and Job.objects.get(pk=ok.json()["job_id"]).kind == "train_encoder"


def test_upload_valid_checkpoint_adds_ready_encoder(curator_client):
    survey = make_survey()
    upload = SimpleUploadedFile("mine.pt", checkpoint_bytes(tiny_payload()))
    response = curator_client.post("/encoders/upload/", {"name": "from elsewhere", "checkpoint": upload,
                                                          "surveys": ["test"]})
    encoder = Encoder.objects.get(name="from elsewhere")
    assert response.status_code == 302 and response["Location"] == f"/encoders/{encoder.pk}/"
    assert (encoder.status, encoder.source, encoder.config["encoder"]["feature_dim"]) == ("ready", "uploaded", 8)
    assert list(encoder.surveys.all()) == [survey]
    from webapp.embeddings.services.encoding import embed_images
    assert embed_images(encoder, galaxy_images(3, 3, 16)).shape == (3, 8)


@pytest.mark.parametrize("content, message", [
    (b"definitely not torch", "not a readable PyTorch checkpoint"),
    (None, "lacks key(s) ['encoder_config']"),
    ("mismatch", "weights do not match the config"),
    ("pickle", "not a readable PyTorch checkpoint"),
])
def test_upload_bad_checkpoint_is_refused_and_leaves_nothing(curator_client, settings, content, message):
    if content is None:
        payload = tiny_payload()
        del payload["encoder_config"]
        content = checkpoint_bytes(payload)
    elif content == "mismatch":
        payload = tiny_payload()
        payload["encoder_config"]["width"] = 8
        content = checkpoint_bytes(payload)
    elif content == "pickle":  # arbitrary objects need unpickling code: refused by weights_only loading
        content = checkpoint_bytes({"format": "latentsky-encoder/1", "evil": Exception("x")})
    response = curator_client.post("/encoders/upload/", {"name": "bad", "checkpoint": SimpleUploadedFile("x.pt", content)})
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    assert not Encoder.objects.exists()
    assert not list((settings.DATA_DIR / "encoders").rglob("*.pt*")) if (settings.DATA_DIR / "encoders").exists() else True


def test_upload_refuses_oversized_file(curator_client, monkeypatch):
    from webapp.embeddings import forms
    monkeypatch.setattr(forms, "CHECKPOINT_LIMIT", 100)
    response = curator_client.post("/encoders/upload/", {"name": "big", "checkpoint": SimpleUploadedFile("b.pt", b"x" * 200)})
    assert response.status_code == 400 and "checkpoints are limited to" in response.content.decode()


def test_embed_and_evaluate_buttons_queue_jobs(curator_client):
    make_survey()
    make_survey(name="two bands", slug="two", bands=("g", "r"))
    encoder = make_encoder()
    encoder.config = {"preprocess": {"image_kind": "flux", "bands": ["g", "r", "i"]}}
    encoder.save()
    response = curator_client.post(f"/encoders/{encoder.pk}/embed", {"surveys": ["test"]})
    job = Job.objects.get(kind="embed")
    assert response["Location"] == f"/jobs/{job.pk}/" and job.params == {"encoder_id": encoder.pk, "surveys": ["test"]}
    refused = curator_client.post(f"/encoders/{encoder.pk}/embed", {"surveys": ["two"]}, follow=True)
    assert "expects 3 bands" in refused.content.decode() and Job.objects.filter(kind="embed").count() == 1
    curator_client.post(f"/encoders/{encoder.pk}/evaluate")
    assert Job.objects.get(kind="evaluate_encoder").params == {"encoder_id": encoder.pk}


def test_resume_only_for_interrupted_encoders(curator_client):
    make_survey(n=12)
    encoder = make_encoder(survey=None)
    refused = curator_client.post(f"/encoders/{encoder.pk}/resume", follow=True)
    assert "no interrupted training" in refused.content.decode() and not Job.objects.exists()
    encoder.status = ArtifactStatus.FAILED
    encoder.metrics = {"stopped": {"reason": "cancelled", "epochs_done": 2, "resumable": True}}
    encoder.config = {"train": {"epochs": 5, "batch_size": 8, "method": "simclr"}}
    encoder.save()
    from webapp.catalog.models import Survey
    encoder.surveys.add(Survey.objects.get(slug="test"))
    curator_client.post(f"/encoders/{encoder.pk}/resume")
    job = Job.objects.get(kind="train_encoder")
    assert job.params["encoder_id"] == encoder.pk and job.params["surveys"] == ["test"] and job.params["epochs"] == 5


def test_list_shows_metrics_chart_and_sets_with_constant_queries(curator_client, django_assert_max_num_queries):
    survey = make_survey()
    report = {"survey": "test", "label": "metadata:gz_label", "n_labelled": 12, "classes": ["a", "b"],
              "class_counts": {"a": 6, "b": 6}, "results": {
                  rep: {"dim": 8, "knn": {"accuracy": v, "balanced_accuracy": v, "per_class": {"a": v, "b": v}},
                        "linear": {"accuracy": v, "balanced_accuracy": v, "per_class": {"a": v, "b": v}}}
                  for rep, v in (("ssl", 0.9), ("pca_pixels", 0.6), ("random_encoder", 0.5))},
              "rows": [{"representation": "ssl", "linear_bal_acc": 0.9, "knn_bal_acc": 0.9}]}
    for i in range(3):
        enc = make_encoder(name=f"enc{i}", survey=survey, metrics={"evaluation": {"test": report}})
        es = EmbeddingSet.objects.create(encoder=enc, name=f"set{i}")
        es.surveys.add(survey)
        write_embedding_set(es, np.arange(2), np.eye(2, 4, dtype=np.float32))
    with CaptureQueriesContext(connection) as three:
        page = curator_client.get("/encoders/")
    text = page.content.decode()
    assert page.status_code == 200 and "set2" in text and "data-bokeh-item=" in text and "0.900" in text
    make_encoder(name="enc3", survey=survey, metrics={"evaluation": {"test": report}})
    with CaptureQueriesContext(connection) as four:
        curator_client.get("/encoders/")
    assert len(four) == len(three)
    detail = curator_client.get(f"/encoders/{enc.pk}/")
    assert detail.status_code == 200 and "pca_pixels" in detail.content.decode()


def test_download_checkpoint(curator_client):
    encoder = make_encoder()
    response = curator_client.get(f"/encoders/{encoder.pk}/checkpoint.pt")
    assert response.status_code == 200
    data = torch.load(io.BytesIO(b"".join(response.streaming_content)), weights_only=True)
    assert data["format"] == "latentsky-encoder/1"
    Encoder.objects.filter(pk=encoder.pk).update(status=ArtifactStatus.BUILDING)
    assert curator_client.get(f"/encoders/{encoder.pk}/checkpoint.pt").status_code == 404


def test_training_job_page_shows_epochs_done_and_live_loss(curator_client):
    from webapp.jobs.services import create_job
    job = create_job("train_encoder", {"epochs": 5, "surveys": ["x"]}, dispatch=False)
    Job.objects.filter(pk=job.pk).update(metrics={"loss": [[1, 5.1], [2, 4.9]], "epoch_loss": [[1, 5.0], [2, 4.8]]})
    page = curator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="job-epochs"' in page and "2 / 5" in page
    assert "/static/js/encoders.js" in page and "Training loss (live)" in page
