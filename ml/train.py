"""The contrastive training loop: config, per-epoch checkpoints and exact resume.

``train(source, config, checkpoint_path)`` trains a GalaxyEncoder with SimCLR or BYOL
(ml.contrastive) on raw survey images from an ml.sources source. After every epoch it
writes the whole state (weights, optimizer, LR schedule, method state, loss history and
the TrainConfig) atomically to ``checkpoint_path``. Called again with the same path (a
re-delivered job after a worker died, or a user's resume), it continues after the last
finished epoch. Each epoch's shuffling and augmentations are seeded from (seed, epoch)
only, so on CPU a resumed run ends with exactly the weights and optimizer state of an
uninterrupted one.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

# LATENTSKY_TORCH_MKLDNN=0 trains on PyTorch's native CPU kernels instead of oneDNN: on one VM
# oneDNN's convolution backward spun for ever (tests/conftest.py sets it for the suite and the
# workers it starts).  Unset, oneDNN stays on.
if os.environ.get("LATENTSKY_TORCH_MKLDNN") == "0":
    torch.backends.mkldnn.enabled = False

from ml.augment import Augmenter, AugmentConfig, PreprocessConfig, fit_preprocess
from ml.checkpoints import CheckpointError, encoder_payload, parse_checkpoint, read_checkpoint, save_atomic
from ml.contrastive import METHODS, build_method
from ml.embed import autocast_for, pick_device
from ml.encoders import config_from_dict, config_to_dict, encoder_from_config, preset_config
from ml.sources import prefetch, sample_rows

NORMALISATION_SAMPLE = 512  # images used to fit sky sigma and normalisation


@dataclass
class TrainConfig:
    """Everything that defines a training run. Saved in every checkpoint, re-applied on resume."""
    method: str = "simclr"  # "simclr" (NT-Xent) or "byol"
    preset: str = "small"  # encoder preset (ml.encoders.PRESETS); "encoder" overrides fields
    encoder: dict = field(default_factory=dict)  # EncoderConfig fields overriding the preset
    image_size: int = 32  # network input side in pixels (32–96); 32 keeps the CPU demo fast
    crop_fraction: float = 0.75  # centre fraction of each stored cutout fed to the network
    epochs: int = 12  # passes over the training images
    batch_size: int = 256  # galaxies per step (SimCLR sees 2×batch views, 2×batch-2 negatives each)
    lr: float = 2e-3  # AdamW peak learning rate at batch 256, scaled linearly with batch size
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    temperature: float = 0.2  # NT-Xent temperature (0.1–0.5 works for small batches)
    byol_tau: float = 0.99  # BYOL base EMA rate of the target network
    seed: int = 0  # weights, shuffling and augmentations all follow from it
    amp: bool = True  # mixed precision (CUDA only; ignored on CPU)
    channels_last: bool = True  # NHWC memory layout: tensor cores on CUDA, faster oneDNN kernels on CPU
    augment: dict = field(default_factory=lambda: asdict(AugmentConfig()))  # AugmentConfig fields

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; options are {sorted(known)}")
        return cls(**data).validate()

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {list(METHODS)}")
        if not 1 <= self.epochs <= 1000:
            raise ValueError(f"epochs {self.epochs} must be 1–1000")
        if not 4 <= self.batch_size <= 8192:
            raise ValueError(f"batch_size {self.batch_size} must be 4–8192")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr {self.lr} must be in (0, 1]")
        if not 0.01 <= self.temperature <= 10:
            raise ValueError(f"temperature {self.temperature} must be 0.01–10")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction {self.crop_fraction} must be in (0, 1]")
        AugmentConfig(**self.augment).validate()
        self.encoder_config(3)  # raises on a bad preset, size or override
        return self

    def encoder_config(self, in_channels: int):
        return preset_config(self.preset, **{**self.encoder, "in_channels": in_channels,
                                             "image_size": self.image_size})

    def resume_key(self) -> dict:
        """Fields that must match to continue a checkpoint (epochs may grow)."""
        return {k: v for k, v in asdict(self).items() if k not in ("epochs",)}


@dataclass
class StepEvent:
    """What the progress callback hears after every optimisation step."""
    epoch: int  # 1-based epoch this step belongs to
    epochs: int
    step: int  # global step, 1-based
    total_steps: int
    loss: float
    epoch_end: bool = False  # True on the last step of an epoch (after its checkpoint)
    epoch_loss: float | None = None  # mean loss of the finished epoch


@dataclass
class TrainResult:
    model: torch.nn.Module  # GalaxyEncoder on CPU, eval mode
    preprocess: PreprocessConfig
    epochs_done: int
    steps_done: int
    seconds: float  # training time summed over all attempts
    history: list  # [[step, loss], ...]
    epoch_losses: list  # [[epoch, mean loss], ...]
    resumed_from_epoch: int  # 0 for a fresh run


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def train(source, config: TrainConfig, checkpoint_path: str | Path, image_kind: str = "flux",
          bands=("g", "r", "i"), on_step: Callable[[StepEvent], None] | None = None,
          device: torch.device | None = None) -> TrainResult:
    """Train (or resume) an encoder on ``source``; see the module docstring."""
    config.validate()
    device = device or pick_device()
    cuda = device.type == "cuda"
    checkpoint_path = Path(checkpoint_path)
    batch = min(config.batch_size, len(source))
    if batch < 4:
        raise ValueError(f"need at least 4 images to train, got {len(source)}")
    steps_per_epoch = len(source) // batch
    total_steps = steps_per_epoch * config.epochs

    saved = _load_resumable(checkpoint_path, config)
    if saved is not None:
        model, preprocess = parse_checkpoint(saved)
    else:
        sample = sample_rows(source, NORMALISATION_SAMPLE)
        preprocess = fit_preprocess(sample, image_kind, bands, config.image_size, config.crop_fraction)
        model = encoder_from_config(config.encoder_config(len(bands)), seed=config.seed)
    model.to(device)
    if config.channels_last:  # NHWC: faster with oneDNN on CPU (~1.3-1.5x here) and tensor cores on GPU
        model.to(memory_format=torch.channels_last)
    with torch.random.fork_rng(devices=[]):  # BYOL's predictor is initialised here: seed it too
        torch.manual_seed(config.seed + 1)
        method = build_method(config.method, model, config.temperature, config.byol_tau).to(device)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr * batch / 256, weight_decay=config.weight_decay)
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup, total_steps))
    use_scaler = cuda and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    state = {"epoch": 0, "step": 0, "history": [], "epoch_losses": [], "seconds": 0.0}
    if saved is not None:
        _restore(saved["state"], method, optimizer, scheduler, scaler, state)
        scheduler.lr_lambdas[0] = lr_lambda(warmup, total_steps)  # epochs may have grown
    resumed_from = state["epoch"]
    augmenter = Augmenter(preprocess, AugmentConfig(**config.augment))

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        started = time.monotonic()
        method.train()
        rng = np.random.default_rng([config.seed, epoch])
        gen = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + epoch)
        losses = []
        for raw in prefetch(source.epoch_batches(batch, rng), depth=3):
            x = torch.from_numpy(raw)
            x = x.pin_memory().to(device, non_blocking=True) if cuda else x
            v1, v2 = augmenter(x, gen), augmenter(x, gen)  # (B, C, S, S) each
            if config.channels_last:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            with autocast_for(device, config.amp):
                loss = method.loss(v1, v2)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {state['step'] + 1}; "
                                         "try a lower learning rate (the last checkpoint is kept)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            state["step"] += 1
            method.after_step(state["step"], total_steps)
            value = float(loss.detach())
            losses.append(value)
            state["history"].append([state["step"], value])
            if on_step is not None and len(losses) < steps_per_epoch:
                on_step(StepEvent(epoch, config.epochs, state["step"], total_steps, value))
        state["epoch"] = epoch
        state["seconds"] += time.monotonic() - started
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        state["epoch_losses"].append([epoch, mean_loss])
        _save(checkpoint_path, model, preprocess, config, method, optimizer, scheduler, scaler, state)
        if on_step is not None:
            on_step(StepEvent(epoch, config.epochs, state["step"], total_steps, losses[-1] if losses else mean_loss,
                              epoch_end=True, epoch_loss=mean_loss))

    model.to("cpu").eval()
    model.to(memory_format=torch.contiguous_format)
    return TrainResult(model, preprocess, state["epoch"], state["step"], state["seconds"],
                       state["history"], state["epoch_losses"], resumed_from)


def _load_resumable(path: Path, config: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    saved = read_checkpoint(path)
    if "state" not in saved or "train_config" not in saved:
        raise CheckpointError(f"{path.name} is an exported encoder without training state; cannot resume")
    previous = TrainConfig.from_dict(dict(saved["train_config"]))
    if previous.resume_key() != config.resume_key():
        changed = sorted(k for k, v in config.resume_key().items() if previous.resume_key().get(k) != v)
        raise CheckpointError(f"checkpoint {path.name} was trained with different settings ({', '.join(changed)}); "
                              "start a new encoder instead of resuming")
    return saved


def _restore(saved: dict, method, optimizer, scheduler, scaler, state: dict) -> None:
    method.load_extra_state(saved["method"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    for key in state:
        state[key] = saved[key]


def _save(path, model, preprocess, config, method, optimizer, scheduler, scaler, state) -> None:
    payload = encoder_payload(model, preprocess)
    payload["train_config"] = asdict(config)
    payload["state"] = {"method": _to_cpu(method.extra_state()), "optimizer": _to_cpu(optimizer.state_dict()),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {}, **state}
    save_atomic(payload, path)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def encoder_config_of(checkpoint: dict):
    return config_from_dict(dict(checkpoint["encoder_config"]))


__all__ = ["TrainConfig", "StepEvent", "TrainResult", "train", "config_to_dict"]
