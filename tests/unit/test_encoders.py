"""ml/encoders.py and ml/checkpoints.py: shapes for any bands and sizes, presets, config round trips."""
from __future__ import annotations

import pytest
import torch

from ml.augment import PreprocessConfig
from ml.checkpoints import CheckpointError, export_encoder, load_encoder, read_checkpoint
from ml.encoders import (PRESETS, EncoderConfig, config_from_dict, config_to_dict, count_parameters,
                         encoder_from_config, preset_config)

pytestmark = pytest.mark.unit
TINY = {"width": 4, "stages": (1, 1), "proj_hidden": 16, "proj_dim": 8}


@pytest.mark.parametrize("bands", [1, 3, 5])
@pytest.mark.parametrize("size", [32, 48, 64, 96])
def test_any_bands_and_sizes_give_fixed_dimension(bands, size):
    model = encoder_from_config(preset_config("small", in_channels=bands, image_size=size, **TINY), seed=0).eval()
    x = torch.randn(2, bands, size, size)
    with torch.no_grad():
        h, z = model(x), model.project(x)
    assert h.shape == (2, 8) and z.shape == (2, 8)
    assert torch.isfinite(h).all()


def test_presets_small_for_cpu_large_for_gpu():
    small, large = (encoder_from_config(preset_config(p), seed=0) for p in ("small", "large"))
    assert small.feature_dim == 64 and large.feature_dim == 512
    assert count_parameters(small) < 200_000 < 5_000_000 < count_parameters(large)
    assert set(PRESETS) == {"small", "large"}


def test_seed_makes_initial_weights_reproducible():
    a, b = (encoder_from_config(preset_config("small", **TINY), seed=7) for _ in range(2))
    c = encoder_from_config(preset_config("small", **TINY), seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.backbone.stem[0].weight, c.backbone.stem[0].weight)


def test_config_round_trip_and_validation():
    cfg = preset_config("large", in_channels=5, image_size=48)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="image_size 128 is outside 32–96"):
        preset_config("small", image_size=128)
    with pytest.raises(ValueError, match="unknown field"):
        config_from_dict({**config_to_dict(cfg), "dropout": 0.1})
    with pytest.raises(ValueError, match="unknown encoder preset"):
        preset_config("huge")
    assert EncoderConfig(image_size=32).resolved_stem_stride() == 1 and EncoderConfig(image_size=64).resolved_stem_stride() == 2


def test_exported_checkpoint_reloads_identically(tmp_path):
    model = encoder_from_config(preset_config("small", **TINY), seed=1).eval()
    pre = PreprocessConfig(image_size=64)
    export_encoder(model, pre, tmp_path / "enc.pt")
    loaded, loaded_pre, raw = load_encoder(tmp_path / "enc.pt")
    assert loaded_pre == pre and raw["format"] == "latentsky-encoder/1"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert not list(tmp_path.glob("*.partial"))


def test_broken_checkpoints_give_clear_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pt")
    model = encoder_from_config(preset_config("small", **TINY), seed=1)
    export_encoder(model, PreprocessConfig(image_size=64), tmp_path / "ok.pt")
    data = torch.load(tmp_path / "ok.pt", weights_only=True)
    data["model"]["backbone.stem.0.weight"] = torch.full_like(data["model"]["backbone.stem.0.weight"], float("nan"))
    torch.save(data, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_encoder(tmp_path / "nan.pt")
    data = torch.load(tmp_path / "ok.pt", weights_only=True)
    data["preprocess"]["bands"] = ["g", "r"]
    torch.save(data, tmp_path / "bands.pt")
    with pytest.raises(CheckpointError, match="preprocess.bands has 2 entries for 3 bands"):
        load_encoder(tmp_path / "bands.pt")
