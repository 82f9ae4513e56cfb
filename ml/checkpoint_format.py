"""What a usable encoder checkpoint must satisfy, shared by ml.checkpoints and ml.timm_encoder.

Its own module so that both can use it without importing each other (ml.checkpoints builds a
timm encoder on load; ml.timm_encoder checks the same preprocessing rules).
"""
from __future__ import annotations

from ml.augment import PreprocessConfig


class CheckpointError(ValueError):
    """The file is not a usable Latent Sky encoder checkpoint; the message says why."""


def check_preprocess(pre: PreprocessConfig, channels: int) -> None:
    if pre.image_kind not in ("flux", "rgb"):
        raise CheckpointError(f"preprocess.image_kind {pre.image_kind!r} must be 'flux' or 'rgb'")
    for name in ("bands", "sky_sigma", "softening", "offset", "scale"):
        if len(getattr(pre, name)) != channels:
            raise CheckpointError(f"preprocess.{name} has {len(getattr(pre, name))} entries for {channels} bands")
    if any(float(s) <= 0 for s in pre.softening + pre.scale):
        raise CheckpointError("preprocess softening and scale must be positive")
    if not 0 < pre.crop_fraction <= 1:
        raise CheckpointError(f"preprocess.crop_fraction {pre.crop_fraction} must be in (0, 1]")
