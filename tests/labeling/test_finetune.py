"""ml/transfer.finetune_encoder on a tiny encoder and tiny images (CPU)."""
import numpy as np
import pytest
import torch

from ml.augment import fit_preprocess
from ml.encoders import encoder_from_config, preset_config
from ml.transfer import FinetuneConfig, finetune_encoder

pytestmark = pytest.mark.unit


def two_shapes(n=64, size=32, seed=0):
    """Round blobs (class 0) and thin bars (class 1), 3 bands of flux with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2)
    y = np.arange(n) % 2
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
        sx, sy = (3.0, 3.0) if y[i] == 0 else (6.0, 0.8)
        blob = 20 * np.exp(-(u ** 2 / (2 * sx ** 2) + v ** 2 / (2 * sy ** 2)))
        images[i] = blob[None] + rng.normal(scale=0.3, size=(3, size, size))
    return images, y


@pytest.mark.slow
def test_finetuning_learns_the_labels_and_leaves_the_original_alone():
    images, y = two_shapes(32)
    pre = fit_preprocess(images, "flux", ["g", "r", "i"], image_size=32, crop_fraction=1.0)
    model = encoder_from_config(preset_config("small", image_size=32, width=8), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(epochs=5, batch_size=16, lr_backbone=1e-3, lr_head=1e-2, augment=True)
    calls = []
    tuned, report = finetune_encoder(model, pre, images, y, 2, cfg, device=torch.device("cpu"),
                                     progress=lambda done, total, msg: calls.append((done, total)))
    assert report["train_accuracy"] >= 0.9 and report["device"] == "cpu"
    assert report["losses"][-1] < report["losses"][0]
    assert calls[-1][0] == calls[-1][1]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())       # original unchanged
    changed = [k for k, v in tuned.state_dict().items() if k.startswith("backbone") and not torch.equal(before[k], v)]
    assert changed and not tuned.training
    assert all(torch.equal(before[k], v) for k, v in tuned.state_dict().items() if k.startswith("projector"))
    with torch.no_grad():
        out = tuned(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, tuned.feature_dim) and torch.isfinite(out).all()


def test_finetuning_refuses_mismatched_inputs():
    images, y = two_shapes(8)
    pre = fit_preprocess(images, "flux", ["g", "r", "i"], image_size=32, crop_fraction=1.0)
    model = encoder_from_config(preset_config("small", image_size=32, width=8), seed=0)
    with pytest.raises(ValueError, match="need at least 2 labelled images"):
        finetune_encoder(model, pre, images, y[:5], 2, FinetuneConfig(epochs=1), device=torch.device("cpu"))


# ---------------------------------------------------------------- the job chain in the web app
@pytest.fixture
def encoder_task(db):
    from tests.labeling.factories import make_encoder_task
    return make_encoder_task()


@pytest.mark.slow
def test_finetune_job_makes_a_new_encoder_and_the_switch_job_retrains(encoder_task, make_user):
    from tests.labeling.factories import make_embedding_set
    from webapp.embeddings.services.encoding import load_encoder_model
    from webapp.jobs.models import Job
    from webapp.jobs.services import create_job, execute_job
    from webapp.labeling.models import Round, Task
    from webapp.labeling.services import finetune, labels

    task, ids = encoder_task
    user = make_user("curator")
    for i, g in enumerate(ids[:19]):
        labels.record_label(task, g, user, "value", class_index=i % 4)
    with pytest.raises(finetune.FinetuneError, match="at least 20 labelled galaxies; this task has 19"):
        finetune.start_finetune(task, user)
    labels.record_label(task, ids[19], user, "value", class_index=3)
    with pytest.raises(finetune.FinetuneError, match="unknown fine-tuning options"):
        finetune.start_finetune(task, user, {"epochz": 1})
    job = finetune.start_finetune(task, user, {"epochs": 1, "batch_size": 8})
    assert (job.kind, job.queue) == ("label_finetune", "gpu")
    with pytest.raises(finetune.FinetuneError, match="already under way"):
        finetune.start_finetune(task, user)
    assert execute_job(job.pk, worker="test") == "succeeded", Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    new = task.embedding_set.encoder.__class__.objects.get(pk=job.result["encoder_id"])
    assert new.status == "ready" and new.config["finetune"]["n_labels"] == 20
    assert load_encoder_model(new).dim == load_encoder_model(task.embedding_set.encoder).dim
    follow = Job.objects.get(parent=job)
    assert follow.kind == "embed" and follow.params["encoder_id"] == new.pk and follow.params["surveys"] == ["ft"]
    assert follow.params["_then"][0]["kind"] == "label_use_embeddings"
    assert Task.objects.get(pk=task.pk).embedding_set_id == task.embedding_set_id     # nothing switched yet
    # what the embed job would produce, then the switch job
    new_set = make_embedding_set(list(task.surveys.all()), name="fine-tuned set")
    switch = create_job("label_use_embeddings", {"task_id": task.pk, "embedding_set_id": new_set.pk})
    assert execute_job(switch.pk, worker="test") == "succeeded"
    switch.refresh_from_db()
    assert Task.objects.get(pk=task.pk).embedding_set_id == new_set.pk
    assert switch.result["round"] == 1 and Round.objects.filter(task=task, number=1).exists()


def test_finetune_endpoint_roles_and_refusals(role_clients, encoder_task):
    task, _ = encoder_task
    for role, status in [("viewer", 403), ("labeler", 403), ("anonymous", 401)]:
        assert role_clients[role].post(f"/api/tasks/{task.pk}/finetune", data="{}",
                                       content_type="application/json").status_code == status
    r = role_clients["curator"].post(f"/api/tasks/{task.pk}/finetune", data="{}", content_type="application/json")
    assert r.status_code == 409 and "at least 20 labelled galaxies" in r.json()["error"]
    page = role_clients["curator"].post(f"/tasks/{task.pk}/finetune")
    assert page.status_code == 302 and page["Location"] == f"/tasks/{task.pk}/"
