"""Fine-tune a contrastive encoder on a labeling task's labels (the optional GPU path).

Heads on frozen embeddings (ml.heads) are the default: seconds on a CPU. When a task has
a few hundred labels, training the encoder itself a little further -- supervised, with
the same augmentations as its self-supervised training -- can separate classes the frozen
space mixes (Walmsley et al. 2020 fine-tune a CNN end to end). The fine-tuned encoder is
a new encoder: the web app embeds the task's surveys with it and switches the task over.

Shapes: images (N, C, H, W) float32 in the image store's units (flux or RGB in [0, 1]);
the encoder's PreprocessConfig crops, resizes and normalises them exactly as when embedding.
Runs on CUDA with mixed precision when available, otherwise on the CPU (tiny tests).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ml.augment import Augmenter, AugmentConfig, Preprocess, PreprocessConfig
from ml.embed import autocast_for, pick_device
from ml.encoders import GalaxyEncoder
from ml.progress import Progress


@dataclass
class FinetuneConfig:
    epochs: int = 15              # passes over the labelled galaxies (a few hundred: ~1 min on a GPU)
    batch_size: int = 64          # labelled galaxies per step
    lr_backbone: float = 3e-4     # small: nudge the self-supervised features, do not forget them
    lr_head: float = 3e-3         # the new linear classifier learns from scratch
    weight_decay: float = 1e-4    # AdamW decoupled weight decay
    augment: bool = True          # random views (rotation, flip, PSF, noise) as in SSL training
    class_balanced: bool = True   # sample each class equally often (rare mergers matter)
    seed: int = 0                 # batches, augmentations and the head's initial weights
    amp: bool = True              # mixed precision on CUDA (ignored on the CPU)


def _batches(y: np.ndarray, n_classes: int, cfg: FinetuneConfig, rng: np.random.Generator):
    """Index batches for one epoch: a permutation, or class-balanced draws with replacement."""
    n = len(y)
    if cfg.class_balanced:
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        p = 1.0 / counts[y]
        order = rng.choice(n, size=n, replace=True, p=p / p.sum())
    else:
        order = rng.permutation(n)
    return [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]


def finetune_encoder(model: GalaxyEncoder, preprocess: PreprocessConfig, images: np.ndarray, y: np.ndarray,
                     n_classes: int, cfg: FinetuneConfig | None = None, device: torch.device | None = None,
                     progress: Progress | None = None) -> tuple[GalaxyEncoder, dict]:
    """Supervised fine-tuning of a copy of ``model`` (backbone + a new linear head).

    Returns (the fine-tuned encoder on the CPU in eval mode, its projector untouched, and a
    report {"losses": per-epoch mean cross-entropy, "train_accuracy", "seconds", "device"}).
    """
    cfg = cfg or FinetuneConfig()
    y = np.asarray(y, dtype=np.int64)
    if len(y) != len(images) or len(y) < 2:
        raise ValueError(f"need at least 2 labelled images with one label each (got {len(images)} images, "
                         f"{len(y)} labels)")
    device = device or pick_device()
    torch.manual_seed(cfg.seed)
    net = copy.deepcopy(model).to(device).train()
    head = nn.Linear(net.feature_dim, n_classes).to(device)
    opt = torch.optim.AdamW([{"params": net.backbone.parameters(), "lr": cfg.lr_backbone},
                             {"params": head.parameters(), "lr": cfg.lr_head}], weight_decay=cfg.weight_decay)
    view = Augmenter(preprocess, AugmentConfig()) if cfg.augment else Preprocess(preprocess)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    raw = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))      # (N, C, H, W), CPU
    labels = torch.from_numpy(y)
    losses, started = [], time.perf_counter()
    total = cfg.epochs * int(np.ceil(len(y) / cfg.batch_size))
    step = 0
    for epoch in range(cfg.epochs):
        epoch_loss = []
        for idx in _batches(y, n_classes, cfg, rng):
            if len(idx) < 2:      # BatchNorm needs two rows
                continue
            x = raw[idx].to(device, non_blocking=True)
            x = view(x, gen) if cfg.augment else view(x)                         # (B, C, S, S)
            with autocast_for(device, cfg.amp):
                logits = head(net(x))                                            # (B, K)
                loss = nn.functional.cross_entropy(logits.float(), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss.append(float(loss.detach()))
            step += 1
            if progress and (step % 10 == 0 or step == total):
                progress(step, total, f"fine-tuning epoch {epoch + 1}/{cfg.epochs}, loss {epoch_loss[-1]:.3f}")
        losses.append(float(np.mean(epoch_loss)) if epoch_loss else float("nan"))
    pre = Preprocess(preprocess)
    recalibrate_batchnorm(net, raw, pre, device)
    net.eval()
    with torch.no_grad():
        pred = torch.cat([head(net(pre(raw[i:i + 256].to(device)))).argmax(1).cpu()
                          for i in range(0, len(raw), 256)])
    report = {"losses": losses, "train_accuracy": float((pred == labels).float().mean()),
              "seconds": time.perf_counter() - started, "device": str(device), "n_labels": int(len(y))}
    return net.cpu().eval(), report


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, raw: torch.Tensor, pre: Preprocess, device: torch.device,
                          batch: int = 256) -> None:
    """Re-estimate BatchNorm running statistics on the un-augmented images (exact averages).

    After a short fine-tune the running means still remember the weights before it (momentum
    0.1 per step); evaluation would then see shifted features. One pass in train mode with
    momentum=None (cumulative average) fixes that without touching any weight."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for i in range(0, len(raw), batch):
        net(pre(raw[i:i + batch].to(device)))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
