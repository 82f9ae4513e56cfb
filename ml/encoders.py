"""ResNet-style galaxy encoders for any number of bands at 32–96 px, plus a projection head.

The backbone maps a normalised cutout (B, C, S, S) to a representation h (B, D);
that h is what an EmbeddingSet stores. The projection head (an MLP, as in SimCLR)
maps h to z (B, P), where the contrastive loss is computed and then thrown away.

Presets:
  small  width 16, three stages of one block: D = 64. Trains in minutes on 2 CPU cores
         (the demo encoder); ~1,000 images/s training at 32 px there.
  large  width 64, four stages of two blocks (ResNet-18 layout): D = 512. For GPU workers.

A checkpoint stores EncoderConfig as a plain dict (dataclasses.asdict) next to the
weights; `encoder_from_config` rebuilds exactly the same network from it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn
from torch.nn import functional as F

MIN_SIZE, MAX_SIZE = 32, 96  # supported input sides in pixels


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the network. Saved in every checkpoint and re-applied on load."""
    in_channels: int = 3  # bands of the survey (g, r, i -> 3; RGB JPEGs -> 3)
    image_size: int = 64  # input side in pixels after preprocessing (32–96)
    width: int = 16  # channels of the first stage; each later stage doubles them
    stages: tuple = (1, 1, 1)  # residual blocks per stage; every stage after the first halves the resolution
    stem_stride: int = 0  # 0 = automatic: 1 below 48 px, 2 from 48 px (keeps compute at 64 px close to 32 px)
    proj_hidden: int = 128  # hidden units of the projection MLP
    proj_dim: int = 64  # output of the projection head, where the contrastive loss lives

    @property
    def feature_dim(self) -> int:
        """D, the size of the representation stored in embedding sets."""
        return self.width * 2 ** (len(self.stages) - 1)

    def resolved_stem_stride(self) -> int:
        return self.stem_stride or (1 if self.image_size < 48 else 2)

    def validate(self) -> "EncoderConfig":
        """Raise ValueError with a readable reason when the shape makes no sense."""
        if not MIN_SIZE <= self.image_size <= MAX_SIZE:
            raise ValueError(f"image_size {self.image_size} is outside {MIN_SIZE}–{MAX_SIZE} px")
        if not 1 <= self.in_channels <= 16:
            raise ValueError(f"in_channels {self.in_channels} must be 1–16 bands")
        if not 4 <= self.width <= 256:
            raise ValueError(f"width {self.width} must be 4–256")
        if not self.stages or len(self.stages) > 5 or any(int(b) < 1 or int(b) > 8 for b in self.stages):
            raise ValueError(f"stages {self.stages} must list 1–5 stages of 1–8 blocks")
        if self.stem_stride not in (0, 1, 2):
            raise ValueError(f"stem_stride {self.stem_stride} must be 0 (auto), 1 or 2")
        if self.proj_hidden < 1 or self.proj_dim < 1:
            raise ValueError("projection sizes must be positive")
        return self


PRESETS: dict[str, EncoderConfig] = {
    "small": EncoderConfig(width=16, stages=(1, 1, 1), proj_hidden=128, proj_dim=64),
    "large": EncoderConfig(width=64, stages=(2, 2, 2, 2), proj_hidden=1024, proj_dim=128),
}


def preset_config(name: str, **overrides) -> EncoderConfig:
    """A preset with some fields replaced, e.g. preset_config("small", in_channels=5, image_size=48)."""
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; presets are {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides).validate()


def config_to_dict(config: EncoderConfig) -> dict:
    data = asdict(config)
    data["stages"] = list(config.stages)
    return data


def config_from_dict(data: dict) -> EncoderConfig:
    """Inverse of config_to_dict; unknown keys are an error (a checkpoint from another program)."""
    known = {f.name for f in fields(EncoderConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"encoder config has unknown field(s) {unknown}; known fields are {sorted(known)}")
    values = dict(data)
    if "stages" in values:
        values["stages"] = tuple(int(b) for b in values["stages"])
    try:
        return EncoderConfig(**values).validate()
    except TypeError as exc:
        raise ValueError(f"encoder config is malformed: {exc}") from None


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H/s, W/s)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.skip(x), inplace=True)


class Backbone(nn.Module):
    """Stem + residual stages + global average pool: (B, C, S, S) -> (B, D)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 3, config.resolved_stem_stride(), 1, bias=False),
            nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        blocks, c_in = [], w
        for i, n_blocks in enumerate(config.stages):
            c_out = w * 2 ** i
            for j in range(int(n_blocks)):
                blocks.append(BasicBlock(c_in, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*blocks)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))          # (B, D, S', S')
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, D)


def projection_mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, the SimCLR v2 / BYOL projector (BYOL's predictor too)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, d_out))


class GalaxyEncoder(nn.Module):
    """Backbone plus projection head. ``forward`` returns the representation h (B, D)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config.validate()
        self.backbone = Backbone(config)
        self.projector = projection_mlp(self.backbone.out_dim, config.proj_hidden, config.proj_dim)
        _init_weights(self)

    @property
    def feature_dim(self) -> int:
        return self.backbone.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, D)
        return self.backbone(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, P)
        return self.projector(self.backbone(x))


def _init_weights(module: nn.Module) -> None:
    """Kaiming init for convolutions and BN gamma 1 (torch defaults differ between versions)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def encoder_from_config(config: EncoderConfig | dict, seed: int | None = None) -> GalaxyEncoder:
    """A freshly initialised encoder; with ``seed`` the initial weights are reproducible.

    A timm config (ml.timm_encoder.TimmConfig, ``kind == "timm"``) gives the same timm
    architecture with random weights (e.g. the random-encoder baseline of an evaluation).
    """
    if getattr(config, "kind", None) == "timm" or (isinstance(config, dict) and config.get("kind") == "timm"):
        from ml.timm_encoder import TimmConfig, TimmEncoder
        timm_config = TimmConfig.from_dict(dict(config)) if isinstance(config, dict) else config
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return TimmEncoder(timm_config).eval()
    if isinstance(config, dict):
        config = config_from_dict(config)
    if seed is None:
        return GalaxyEncoder(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GalaxyEncoder(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
