"""Apply a trained encoder to whole surveys (or any image array) in batches.

Output rows are L2-normalised representations h / |h| (N, D) float32: the contrastive
loss compares directions (cosine similarity), so unit vectors make Euclidean neighbours,
faiss search and UMAP agree with what the network learned.

channels_last everywhere; on CUDA also mixed precision (bfloat16 where supported, else
float16) and a background thread that reads the next batches while the GPU works; on CPU the result is
bit-for-bit reproducible, so embedding a survey twice gives the same checksum.
"""
from __future__ import annotations

import hashlib
from contextlib import nullcontext
from typing import Iterator

import numpy as np
import torch

from ml.augment import Preprocess, PreprocessConfig
from ml.encoders import GalaxyEncoder
from ml.progress import Progress
from ml.sources import ArraySource, prefetch


def pick_device(prefer: str = "auto") -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cpu'/'cuda' force one (cuda must exist)."""
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but this machine has no usable GPU")
    return torch.device(prefer)


def autocast_for(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA only (bf16 when the GPU has it); a no-op context on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def prepare_model(model: GalaxyEncoder, device: torch.device) -> GalaxyEncoder:
    # NHWC is faster on both: tensor cores on CUDA, oneDNN kernels on CPU
    return model.to(device).eval().to(memory_format=torch.channels_last)


@torch.no_grad()
def iter_embed_batches(model: GalaxyEncoder, preprocess: PreprocessConfig, batches: Iterator[np.ndarray],
                       total: int, device: torch.device | None = None, amp: bool = True,
                       progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Embed raw (B, C, H, W) batches in order, yielding each (B, D) float32 block of unit
    vectors as it is done (bounded memory: a caller writes blocks straight to disk)."""
    device = device or pick_device()
    model = prepare_model(model, device)
    pre = Preprocess(preprocess)
    done = 0
    for raw in prefetch(batches, depth=3):
        x = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        if device.type == "cuda":
            x = x.pin_memory().to(device, non_blocking=True)
        x = pre(x).contiguous(memory_format=torch.channels_last)  # (B, C, S, S)
        with autocast_for(device, amp):
            h = model(x)  # (B, D)
        h = torch.nn.functional.normalize(h.float(), dim=1)
        done += len(h)
        if done > total:
            raise RuntimeError(f"source yielded more than the {total} images expected")
        yield h.cpu().numpy()
        if progress is not None:
            progress(done, total, f"embedded {done:,} of {total:,} images")
    if done != total:
        raise RuntimeError(f"source yielded {done} images, expected {total}")


def embed_batches(model: GalaxyEncoder, preprocess: PreprocessConfig, batches: Iterator[np.ndarray],
                  total: int, device: torch.device | None = None, amp: bool = True,
                  progress: Progress | None = None) -> np.ndarray:
    """Embed raw (B, C, H, W) batches in order -> (total, D) float32 unit vectors."""
    out = np.empty((total, model.feature_dim), dtype=np.float32)
    done = 0
    for h in iter_embed_batches(model, preprocess, batches, total, device, amp, progress):
        out[done:done + len(h)] = h
        done += len(h)
    return out


def embed_source(model: GalaxyEncoder, preprocess: PreprocessConfig, source, batch_size: int = 512,
                 device: torch.device | None = None, amp: bool = True,
                 progress: Progress | None = None) -> np.ndarray:
    """Every row of an ArraySource / StoreSource, in row order."""
    check_compatible(preprocess, source.item_shape)
    return embed_batches(model, preprocess, source.ordered_batches(batch_size), len(source),
                         device, amp, progress)


def iter_embed_source(model: GalaxyEncoder, preprocess: PreprocessConfig, source, batch_size: int = 512,
                      device: torch.device | None = None, amp: bool = True,
                      progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Every row of a source, in row order, as (B, D) blocks (see iter_embed_batches)."""
    check_compatible(preprocess, source.item_shape)
    return iter_embed_batches(model, preprocess, source.ordered_batches(batch_size), len(source),
                              device, amp, progress)


def embed_array(model: GalaxyEncoder, preprocess: PreprocessConfig, images: np.ndarray,
                batch_size: int = 512, device: torch.device | None = None) -> np.ndarray:
    """(N, C, H, W) raw images in store units -> (N, D) float32 unit vectors."""
    return embed_source(model, preprocess, ArraySource(np.asarray(images, dtype=np.float32)),
                        batch_size, device)


def check_compatible(preprocess: PreprocessConfig, item_shape: tuple) -> None:
    """Raise ValueError when images of shape (C, H, W) cannot go through this encoder."""
    channels = item_shape[0]
    if channels != len(preprocess.bands):
        raise ValueError(f"images have {channels} bands but the encoder was trained on "
                         f"{len(preprocess.bands)} ({', '.join(preprocess.bands)})")
    if min(item_shape[1:]) < 8:
        raise ValueError(f"images of {item_shape[1]}×{item_shape[2]} px are too small to embed")


def vectors_checksum(vectors: np.ndarray) -> str:
    """sha256 of the float32 bytes in row order (the EmbeddingSet checksum)."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()
