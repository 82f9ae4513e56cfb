"""manage.py import_encoder: a checkpoint trained elsewhere becomes a ready, usable encoder (or a clear error)."""
from __future__ import annotations

import pytest
import torch
from django.core.management import CommandError, call_command

from tests.catalog.factories import galaxy_images, make_survey
from tests.embeddings.test_encoders_views import tiny_payload
from webapp.embeddings.models import Encoder
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_import_adds_ready_encoder_that_embeds_and_queues_jobs(tmp_path, capsys):
    survey = make_survey()
    path = tmp_path / "trained-on-a-gpu.pt"
    torch.save(tiny_payload(), path)
    call_command("import_encoder", str(path), "--surveys", "test", "--embed", "--evaluate")
    encoder = Encoder.objects.get()
    assert (encoder.name, encoder.status, encoder.source) == ("trained-on-a-gpu", "ready", "uploaded")
    assert encoder.config["encoder"]["feature_dim"] == 8 and list(encoder.surveys.all()) == [survey]
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["embed", "evaluate_encoder"]
    assert Job.objects.get(kind="embed").params == {"encoder_id": encoder.pk, "surveys": ["test"]}
    from webapp.embeddings.services.encoding import embed_images
    assert embed_images(encoder, galaxy_images(3, 3, 16)).shape == (3, 8)
    assert f"Encoder #{encoder.pk}" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such file"),
    ("garbage", "not a readable PyTorch checkpoint"),
    ("bands", "expects 3 bands"),
])
def test_import_refuses_bad_input_and_leaves_nothing(tmp_path, setup, message):
    path = tmp_path / "x.pt"
    if setup == "garbage":
        path.write_bytes(b"not torch at all")
    elif setup == "bands":
        make_survey(slug="two", bands=("g", "r"))
        torch.save(tiny_payload(), path)
    args = [str(path)] + (["--surveys", "two"] if setup == "bands" else [])
    with pytest.raises(CommandError, match=message):
        call_command("import_encoder", *args)
    assert not Encoder.objects.exists() and not Job.objects.exists()


def test_embed_without_surveys_is_an_error(tmp_path):
    path = tmp_path / "x.pt"
    torch.save(tiny_payload(), path)
    with pytest.raises(CommandError, match="need --surveys"):
        call_command("import_encoder", str(path), "--embed")
    assert not Encoder.objects.exists()
