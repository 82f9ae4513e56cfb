"""Cross-team interface: run an Encoder on images outside a survey (e.g. an uploaded cutout).

``embed_images(encoder, images)`` takes (N, C, H, W) float32 pixels in the SAME units as the
survey image store the encoder was trained on (flux, or RGB in [0, 1]); resizing/cropping
to the encoder's size and normalisation happen inside, exactly as when a survey is embedded
(ml.embed), so the returned (N, D) float32 unit vectors live in the same space as that
encoder's EmbeddingSets.

Runs on the CPU: this is called from web processes, which should not hold GPU memory.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from django.conf import settings

from ml import embed as ml_embed
from ml.augment import PreprocessConfig
from ml.checkpoints import load_encoder
from ml.encoders import GalaxyEncoder
from webapp.embeddings.models import ArtifactStatus, Encoder

MAX_IMAGES_PER_CALL = 4096  # an upload search embeds a handful; refuse accidental whole surveys
_CACHE_SIZE = 4  # encoders kept in memory per process (the small one is ~0.4 MB, the large ~45 MB)
_lock = threading.Lock()
_cache: dict[tuple, "LoadedEncoder"] = {}


class EncoderUnavailable(RuntimeError):
    """The encoder has no usable checkpoint (still training, failed, or the file is gone)."""


@dataclass(frozen=True)
class LoadedEncoder:
    encoder_id: int
    model: GalaxyEncoder  # eval mode, CPU
    preprocess: PreprocessConfig

    @property
    def dim(self) -> int:
        return self.model.feature_dim

    @property
    def bands(self) -> list:
        return list(self.preprocess.bands)


def checkpoint_abspath(encoder: Encoder) -> Path:
    return Path(settings.DATA_DIR) / encoder.checkpoint_path


def load_encoder_model(encoder: Encoder) -> LoadedEncoder:
    """The encoder's network and preprocessing, loaded once per process (keyed by file identity)."""
    if encoder.status != ArtifactStatus.READY or not encoder.checkpoint_path:
        raise EncoderUnavailable(f"encoder {encoder.pk} ({encoder.name}) is {encoder.status}, not ready")
    path = checkpoint_abspath(encoder)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise EncoderUnavailable(f"checkpoint of encoder {encoder.pk} is missing ({encoder.checkpoint_path})") from None
    key = (encoder.pk, str(path), stat.st_mtime_ns, stat.st_size)
    with _lock:
        loaded = _cache.get(key)
        if loaded is None:
            model, preprocess, _ = load_encoder(path)
            loaded = LoadedEncoder(encoder.pk, model, preprocess)
            for old in [k for k in _cache if k[0] == encoder.pk]:
                del _cache[old]
            while len(_cache) >= _CACHE_SIZE:
                del _cache[next(iter(_cache))]
            _cache[key] = loaded
        return loaded


def embed_images(encoder: Encoder, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images in store units -> (N, D) float32 vectors in the encoder's space.

    ValueError with a readable message for wrong shapes, band counts or non-finite pixels.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {images.shape}")
    if len(images) > MAX_IMAGES_PER_CALL:
        raise ValueError(f"{len(images)} images in one call; at most {MAX_IMAGES_PER_CALL}")
    if images.dtype.kind not in "fiu":
        raise ValueError(f"images have dtype {images.dtype}; expected floating point pixels")
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or inf pixels")
    loaded = load_encoder_model(encoder)
    if len(images) == 0:
        return np.empty((0, loaded.dim), dtype=np.float32)
    ml_embed.check_compatible(loaded.preprocess, images.shape[1:])
    with _lock:  # one forward at a time per process: torch threads are shared anyway
        return ml_embed.embed_array(loaded.model, loaded.preprocess, images, device=torch.device("cpu"))


def clear_cache() -> None:
    with _lock:
        _cache.clear()
