"""Encoders the field publishes: timm architectures with a local state dict (Zoobot's layout).

Random weights are saved to tmp_path (safetensors, .pth, a Zoobot-style Lightning .ckpt),
imported through ``manage.py import_encoder --timm`` and the upload page, embedded by the
ordinary ``embed`` job, and compared with a direct timm forward pass. Nothing is downloaded:
every model is built with ``pretrained=False``. Input size 32 px keeps the tests fast.
"""
from __future__ import annotations

import html
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from safetensors.torch import save_file

from ml.timm_import import load_timm
from tests.catalog.factories import make_survey
from webapp.embeddings.models import EmbeddingSet, Encoder
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here may reach the hub
SIZE = 32  # network input side for the tests (Zoobot uses 224)


def random_timm(arch: str, in_chans: int = 3, seed: int = 0) -> torch.nn.Module:
    """A timm encoder with random weights and non-trivial BatchNorm statistics."""
    timm = load_timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # eval-mode BN must use the saved running stats
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def save_weights(net: torch.nn.Module, path, layout: str) -> None:
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if layout == "safetensors":  # Zoobot's hub files: timm's own key names
        save_file(state, str(path))
    elif layout == "pth":
        torch.save(state, path)
    elif layout == "lightning":  # ZoobotTree.state_dict(): the timm model under self.encoder, plus a head
        torch.save({"epoch": 3, "state_dict": {**{f"encoder.{k}": v for k, v in state.items()},
                                                "head.1.weight": torch.zeros(4, 8)},
                    "pytorch-lightning_version": "2.1.0"}, path)


def direct_vectors(net: torch.nn.Module, images: np.ndarray, greyscale: bool = False) -> np.ndarray:
    """Pixels in [0, 1] resized to SIZE, no mean/std (Zoobot), timm forward, unit length."""
    x = torch.from_numpy(images)
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    if greyscale:
        x = x.mean(dim=1, keepdim=True)
    with torch.no_grad():
        h = net(x)
    return torch.nn.functional.normalize(h, dim=1).numpy()


def survey_images(survey) -> np.ndarray:
    from ml.imagestore import open_store
    with open_store(survey.store_abspath) as reader:
        return np.asarray(reader._ds[:], dtype=np.float32)


def embed(encoder: Encoder, slugs) -> tuple[np.ndarray, np.ndarray]:
    job = services.create_job("embed", {"encoder_id": encoder.pk, "surveys": list(slugs)}, dispatch=False)
    services.execute_job(job.pk, "test-worker")
    job = Job.objects.get(pk=job.pk)
    assert job.status == "succeeded", job.message
    ids, vectors, _ = load_embedding_set(EmbeddingSet.objects.get(pk=job.result["embedding_set_id"]))
    return ids, vectors


def nothing_left(settings) -> bool:
    root = settings.DATA_DIR / "encoders"
    return not Encoder.objects.exists() and not (root.exists() and [p for p in root.rglob("*") if p.is_file()])


def test_timm_imports_without_torchvision():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here; the shim is not used")
    timm = load_timm()
    assert timm.create_model("resnet18", pretrained=False, num_classes=0).num_features == 512
    assert not [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401


@pytest.mark.parametrize("arch, layout", [
    ("convnext_nano", "safetensors"),   # Zoobot's recommended encoder, as on its hub page
    ("efficientnet_b0", "pth"),         # Zoobot's original architecture
    ("resnet18", "lightning"),          # a Lightning checkpoint with the 'encoder.' prefix
])
def test_import_command_embeds_like_a_direct_timm_forward(tmp_path, capsys, arch, layout):
    survey = make_survey(slug="colour", n=6, bands=("R", "G", "B"), image_kind="rgb")
    net = random_timm(arch)
    path = tmp_path / f"weights.{'safetensors' if layout == 'safetensors' else 'pth'}"
    save_weights(net, path, layout)
    call_command("import_encoder", "--timm", arch, str(path), "--image-size", str(SIZE), "--surveys", "colour")
    encoder = Encoder.objects.get()
    assert (encoder.status, encoder.source, encoder.method) == ("ready", "uploaded", "timm")
    config = encoder.config["encoder"]
    assert (config["kind"], config["arch"], config["in_chans"], config["image_size"]) == ("timm", arch, 3, SIZE)
    assert config["feature_dim"] == net.num_features and (config["mean"], config["std"]) == ([], [])
    assert encoder.config["preprocess"]["image_kind"] == "rgb"
    assert encoder.config["timm"]["prefix"] == ("encoder." if layout == "lightning" else "")
    assert f"Encoder #{encoder.pk}" in capsys.readouterr().out
    ids, vectors = embed(encoder, ["colour"])
    assert vectors.shape == (6, net.num_features)
    np.testing.assert_allclose(vectors, direct_vectors(net, survey_images(survey)), rtol=1e-4, atol=1e-5)
    assert ids.tolist() == list(survey.galaxies.order_by("image_index").values_list("pk", flat=True))


def test_greyscale_zoobot_encoder_averages_the_bands(tmp_path):
    survey = make_survey(slug="colour", n=5, bands=("R", "G", "B"), image_kind="rgb", seed=2)
    net = random_timm("convnext_nano", in_chans=1, seed=1)   # like zoobot-encoder-greyscale-convnext_nano
    save_weights(net, tmp_path / "model.safetensors", "safetensors")
    call_command("import_encoder", "--timm", "hf_hub:mwalmsley/zoobot-encoder-greyscale-convnext_nano",
                 str(tmp_path / "model.safetensors"), "--greyscale", "--image-size", str(SIZE),
                 "--surveys", "colour", "--embed")
    encoder = Encoder.objects.get()
    assert (encoder.config["encoder"]["arch"], encoder.config["encoder"]["in_chans"]) == ("convnext_nano", 1)
    assert encoder.config["preprocess"]["bands"] == ["R", "G", "B"]
    assert Job.objects.get(kind="embed").params == {"encoder_id": encoder.pk, "surveys": ["colour"]}
    _, vectors = embed(encoder, ["colour"])
    np.testing.assert_allclose(vectors, direct_vectors(net, survey_images(survey), greyscale=True),
                               rtol=1e-4, atol=1e-5)


def test_upload_page_imports_timm_weights(curator_client, tmp_path):
    survey = make_survey(slug="colour", n=4, bands=("R", "G", "B"), image_kind="rgb")
    net = random_timm("efficientnet_b0", seed=4)
    save_weights(net, tmp_path / "w.safetensors", "safetensors")
    upload = SimpleUploadedFile("model.safetensors", (tmp_path / "w.safetensors").read_bytes())
    response = curator_client.post("/encoders/upload/", {
        "name": "zoobot effnet", "checkpoint": upload, "surveys": ["colour"], "timm_arch": "efficientnet_b0",
        "image_size": SIZE, "crop_fraction": 1.0})
    encoder = Encoder.objects.get(name="zoobot effnet")
    assert response.status_code == 302 and response["Location"] == f"/encoders/{encoder.pk}/"
    assert (encoder.config["encoder"]["arch"], encoder.config["uploaded_file"]) == ("efficientnet_b0", "model.safetensors")
    page = curator_client.get(f"/encoders/{encoder.pk}/").content.decode()
    assert "timm efficientnet_b0" in page
    from webapp.embeddings.services.encoding import embed_images
    images = survey_images(survey)
    np.testing.assert_allclose(embed_images(encoder, images), direct_vectors(net, images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case, message", [
    ("arch", "timm has no architecture 'convnext_nanoo'; did you mean convnext_nano"),
    ("keys", "the weights do not match timm resnet18"),
    ("channels", "the weights expect 1 channel; survey colour has 3 bands R,G,B; choose greyscale"),
    ("flux", "timm/Zoobot weights take colour images scaled to [0, 1]; fluxy holds flux images"),
    ("pickle", "pickled Python objects that are not loaded for safety"),
])
def test_bad_timm_import_is_a_clear_error_and_leaves_nothing(tmp_path, settings, case, message):
    make_survey(slug="colour", n=3, bands=("R", "G", "B"), image_kind="rgb")
    make_survey(name="Fluxy", slug="fluxy", n=3, bands=("g", "r", "i"))
    arch, survey = {"arch": ("convnext_nanoo", "colour"), "keys": ("resnet18", "colour"),
                    "flux": ("convnext_nano", "fluxy")}.get(case, ("convnext_nano", "colour"))
    path = tmp_path / "weights.pth"
    if case == "keys":  # a resnet18 whose last block is missing, plus a stray tensor
        state = random_timm("resnet18").state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
        save_file({**state, "extra.weight": torch.zeros(2)}, str(path))
    elif case == "pickle":  # a Lightning checkpoint whose hyperparameters hold a Python object
        torch.save({"state_dict": random_timm("convnext_nano").state_dict(), "hyper_parameters": {"x": ValueError()}},
                   path)
    else:
        save_weights(random_timm("convnext_nano", in_chans=1 if case == "channels" else 3), path, "pth")
    with pytest.raises(CommandError, match="cannot be used") as error:
        call_command("import_encoder", "--timm", arch, str(path), "--image-size", str(SIZE), "--surveys", survey)
    assert message in str(error.value)
    if case == "keys":
        assert "missing key(s) ['layer4.1.conv1.weight'" in str(error.value) and "'extra.weight'" in str(error.value)
    assert nothing_left(settings)


def test_upload_page_wrong_channels_is_refused_and_leaves_nothing(curator_client, tmp_path, settings):
    make_survey(slug="grey", n=3, bands=("L",), image_kind="rgb")
    save_weights(random_timm("resnet18"), tmp_path / "w.safetensors", "safetensors")
    upload = SimpleUploadedFile("w.safetensors", (tmp_path / "w.safetensors").read_bytes())
    response = curator_client.post("/encoders/upload/", {"name": "x", "checkpoint": upload, "surveys": ["grey"],
                                                          "timm_arch": "resnet18", "image_size": SIZE})
    assert response.status_code == 400
    assert "the weights expect 3 channels; survey grey has 1 band L" in html.unescape(response.content.decode())
    assert nothing_left(settings)


def test_timm_checkpoint_round_trips_through_load_encoder(tmp_path):
    """The app checkpoint keeps the config: load_encoder rebuilds the same network and preprocessing."""
    from ml.checkpoints import export_encoder, load_encoder, read_checkpoint
    from ml.timm_encoder import encoder_from_weights, timm_preprocess
    net = random_timm("convnext_nano", seed=5)
    save_weights(net, tmp_path / "w.safetensors", "safetensors")
    model, report = encoder_from_weights(tmp_path / "w.safetensors", "convnext_nano.zoobot", image_size=SIZE,
                                         imagenet_norm=True)
    assert report["arch"] == "convnext_nano" and model.config.mean == [0.485, 0.456, 0.406]
    export_encoder(model, timm_preprocess(model.config, ["R", "G", "B"], 0.8), tmp_path / "app.pt")
    assert read_checkpoint(tmp_path / "app.pt")["encoder_config"]["kind"] == "timm"
    loaded, pre, _ = load_encoder(tmp_path / "app.pt")
    assert (loaded.config, pre.crop_fraction, pre.image_size) == (model.config, 0.8, SIZE)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = net((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                       / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        np.testing.assert_allclose(loaded(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_timm_encoder_has_a_random_baseline_and_fine_tunes():
    """The evaluation job's random-encoder baseline and the labeling fine-tune work on timm encoders."""
    from ml.encoders import encoder_from_config
    from ml.timm_encoder import TimmConfig, TimmEncoder, timm_preprocess
    from ml.transfer import FinetuneConfig, finetune_encoder
    model = TimmEncoder(TimmConfig(arch="resnet18", image_size=SIZE))
    baseline = encoder_from_config(model.config, seed=1)
    assert type(baseline) is TimmEncoder and baseline.config == model.config
    assert encoder_from_config(model.config_dict(), seed=1).state_dict()["net.conv1.weight"].equal(
        baseline.state_dict()["net.conv1.weight"])
    images = np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32)
    tuned, report = finetune_encoder(model, timm_preprocess(model.config, ["R", "G", "B"]), images,
                                     np.arange(8) % 2, 2, FinetuneConfig(epochs=1, batch_size=4),
                                     device=torch.device("cpu"))
    assert type(tuned) is TimmEncoder and len(report["losses"]) == 1
