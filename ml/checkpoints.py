"""Encoder checkpoints: one torch file holding configs (plain dicts) and weights.

Format ``latentsky-encoder/1`` (a dict; only tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(weights_only=True)`` and cannot run code on load):
  format            "latentsky-encoder/1"
  encoder_config    ml.encoders.EncoderConfig as a dict, or ml.timm_encoder.TimmConfig (kind "timm")
  preprocess        ml.augment.PreprocessConfig as a dict (how raw pixels are normalised)
  model             GalaxyEncoder state_dict (backbone.* and projector.*)
  train_config      ml.contrastive.TrainConfig as a dict (absent in exported encoders)
  state             training state for resuming (optimizer, scheduler, method, epoch, ...)

A checkpoint trained elsewhere needs only the first four keys; ``export_encoder`` writes
exactly that, and ``load_encoder`` checks everything and says what is wrong.
Writes are atomic (``*.partial`` + fsync + rename), so a crash leaves the previous epoch.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ml.atomic import atomic_open
from ml.augment import PreprocessConfig
from ml.encoders import GalaxyEncoder, config_from_dict, config_to_dict
from ml.checkpoint_format import CheckpointError, check_preprocess  # noqa: F401 (re-exported)

FORMAT = "latentsky-encoder/1"
REQUIRED = ("format", "encoder_config", "preprocess", "model")


def save_atomic(payload: dict, path: str | Path) -> None:
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def read_checkpoint(path: str | Path) -> dict:
    """The raw dict, loaded safely (no pickled code), or CheckpointError."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {Path(path).name} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint holds a {type(data).__name__}, expected a dict with {list(REQUIRED)}")
    return data


def encoder_payload(model: GalaxyEncoder, preprocess: PreprocessConfig) -> dict:
    # a TimmEncoder (ml.timm_encoder) writes its own config, marked kind="timm"
    config = model.config_dict() if hasattr(model, "config_dict") else config_to_dict(model.config)
    return {"format": FORMAT, "encoder_config": config,
            "preprocess": preprocess.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def export_encoder(model: GalaxyEncoder, preprocess: PreprocessConfig, path: str | Path) -> None:
    """Write an encoder-only checkpoint that Latent Sky's upload form accepts."""
    save_atomic(encoder_payload(model, preprocess), path)


def parse_checkpoint(data: dict) -> tuple[GalaxyEncoder, PreprocessConfig]:
    """Rebuild the encoder from a checkpoint dict and check it; CheckpointError says what is wrong."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint lacks key(s) {missing}; a Latent Sky encoder checkpoint has "
                              f"{list(REQUIRED)} (see ml.checkpoints.export_encoder)")
    if data["format"] != FORMAT:
        raise CheckpointError(f"checkpoint format {data['format']!r} is not {FORMAT!r}")
    if isinstance(data["encoder_config"], dict) and data["encoder_config"].get("kind") == "timm":
        from ml.timm_encoder import parse_timm_checkpoint  # imports timm only for timm encoders
        return parse_timm_checkpoint(data)
    try:
        config = config_from_dict(dict(data["encoder_config"]))
        preprocess = PreprocessConfig.from_dict(dict(data["preprocess"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"bad config in checkpoint: {exc}") from None
    check_preprocess(preprocess, config.in_channels)
    model = GalaxyEncoder(config)
    try:
        result = model.load_state_dict(dict(data["model"]), strict=False)
    except RuntimeError as exc:  # shape mismatches: report the first one, not pages of them
        lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise CheckpointError(f"weights do not match the config ({len(lines)} tensors differ in shape, e.g. "
                              f"{lines[0] if lines else str(exc)[:200]})") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"weights do not match the config: missing {result.missing_keys[:5]}, "
                              f"unexpected {result.unexpected_keys[:5]}")
    model.eval()
    with torch.no_grad():
        probe = model(torch.zeros(2, config.in_channels, config.image_size, config.image_size))
    if not torch.isfinite(probe).all():
        raise CheckpointError("the encoder produces NaN/inf on a blank image; the weights are broken")
    return model, preprocess


def load_encoder(path: str | Path) -> tuple[GalaxyEncoder, PreprocessConfig, dict]:
    """(model in eval mode on CPU, preprocess config, the raw checkpoint dict)."""
    data = read_checkpoint(path)
    model, preprocess = parse_checkpoint(data)
    if preprocess.image_size != model.config.image_size:
        raise CheckpointError(f"preprocess.image_size {preprocess.image_size} differs from the encoder's "
                              f"{model.config.image_size}")
    return model, preprocess, data
