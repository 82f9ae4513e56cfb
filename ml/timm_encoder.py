"""timm backbones as Latent Sky encoders: import weights the field publishes (Zoobot).

``encoder_from_weights(path, arch)`` builds ``timm.create_model(arch, pretrained=False,
num_classes=0, in_chans=C)`` and loads a local state dict (safetensors, or a torch file read
with ``weights_only=True``), checking every key. The result is a ``TimmEncoder``: the pooled
timm features (B, D) of an image batch, which the ordinary ``embed`` job stores like any
other representation. Its ``TimmConfig`` (architecture, channels, input size, normalisation)
goes into the app's checkpoint (``encoder_config`` with ``kind: "timm"``), and
ml.checkpoints.load_encoder rebuilds the same network from it. Nothing is ever downloaded.

How Zoobot builds and feeds its encoders (mwalmsley/zoobot and mwalmsley/galaxy-datasets,
read for this module):
  * zoobot/pytorch/estimators/define_model.py ``get_pytorch_encoder``:
    ``timm.create_model(architecture_name, in_chans=channels, num_classes=0, ...)`` — a plain
    timm model whose pooled output is the representation; ``channels`` is 3 for the colour
    models and 1 for the greyscale ones (``zoobot-encoder-greyscale-*``).
  * The published encoders are timm hub repos (``hf_hub:mwalmsley/zoobot-encoder-convnext_nano``,
    loaded with ``timm.create_model(name, pretrained=True, num_classes=0)``), so their
    ``model.safetensors`` / ``pytorch_model.bin`` hold timm's own key names: they load here as is.
  * Zoobot's Lightning checkpoints (``ZoobotTree`` / ``FinetuneableZoobot*``) keep the timm
    model at ``self.encoder``: their ``state_dict`` keys start with ``encoder.`` (and the head
    with ``head.``, which is dropped here). Any such wrapper prefix is found and stripped.
  * Input: galaxy_datasets/transforms.py ``GalaxyViewTransform`` "return[s] a channel-first
    float32 tensor in the range (0, 1)" — its ``T.Normalize`` step is commented out, and the
    older ``default_transforms`` end with ``A.ToFloat(max_value=255.0)``: images scaled to
    0–1, **no ImageNet mean/std**. Hence the default normalisation here is mean 0, std 1.
    Greyscale models average the colour channels without weights (``ToGray``:
    ``img.mean(axis=2)``), which ``TimmConfig.greyscale`` reproduces. Training crops are
    resized to 224 px (``output_size=224``), the default input size here.

The images therefore come from an ``rgb`` survey (colour JPEG/PNG cutouts in [0, 1]); a flux
survey would need the stretch the weights were trained with, which a state dict does not say.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from ml.augment import PreprocessConfig
from ml.checkpoint_format import CheckpointError, check_preprocess
from ml.timm_import import load_timm

KIND = "timm"
MIN_SIZE, MAX_SIZE = 16, 1024
ZOOBOT_HUB_PREFIXES = ("zoobot-encoder-greyscale-", "zoobot-encoder-")
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "module")  # Lightning / timm train.py / DDP layouts


@dataclass(frozen=True)
class TimmConfig:
    """A timm backbone and the input its weights expect. Saved in the checkpoint, re-applied on load."""
    kind: str = KIND  # marks a timm encoder_config inside a latentsky-encoder/1 checkpoint
    arch: str = "convnext_nano"  # timm architecture name, e.g. convnext_nano, efficientnet_b0, resnet18
    in_chans: int = 3  # input channels of the weights (read from the first convolution): 3 colour, 1 greyscale
    n_bands: int = 3  # bands of the survey images fed in (== in_chans unless greyscale)
    image_size: int = 224  # network input side in pixels (Zoobot trains at 224)
    mean: list = field(default_factory=list)  # per input channel, subtracted from [0, 1] pixels; [] = 0 (Zoobot)
    std: list = field(default_factory=list)  # per input channel, divides after the mean; [] = 1 (Zoobot)
    greyscale: bool = False  # average the survey's bands (unweighted, as Zoobot's ToGray) into every channel
    pooling: str = ""  # timm global_pool; "" = the architecture's default (average pooling for CNNs)
    feature_dim: int = 0  # D, the pooled feature size (filled when the model is built)

    @property
    def in_channels(self) -> int:
        """Bands of the survey this encoder takes (the name GalaxyEncoder's config uses)."""
        return self.n_bands

    def resolved_mean(self) -> list:
        return [float(v) for v in self.mean] or [0.0] * self.in_chans

    def resolved_std(self) -> list:
        return [float(v) for v in self.std] or [1.0] * self.in_chans

    def validate(self) -> "TimmConfig":
        if self.kind != KIND:
            raise ValueError(f"kind {self.kind!r} is not {KIND!r}")
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError("arch must name a timm architecture")
        if not 1 <= self.in_chans <= 16 or not 1 <= self.n_bands <= 16:
            raise ValueError(f"in_chans {self.in_chans} and n_bands {self.n_bands} must be 1–16")
        if not self.greyscale and self.n_bands != self.in_chans:
            raise ValueError(f"the weights expect {self.in_chans} channel(s) but {self.n_bands} band(s) are fed in; "
                             "set greyscale to average the bands")
        if not MIN_SIZE <= self.image_size <= MAX_SIZE:
            raise ValueError(f"image_size {self.image_size} is outside {MIN_SIZE}–{MAX_SIZE} px")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values and len(values) != self.in_chans:
                raise ValueError(f"{name} has {len(values)} values for {self.in_chans} input channel(s)")
        if any(float(s) <= 0 for s in self.resolved_std()):
            raise ValueError("std must be positive")
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = [float(v) for v in self.mean], [float(v) for v in self.std]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TimmConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"timm encoder config has unknown field(s) {unknown}")
        try:
            return cls(**data).validate()
        except TypeError as exc:
            raise ValueError(f"timm encoder config is malformed: {exc}") from None


class TimmEncoder(nn.Module):
    """(B, n_bands, S, S) pixels in [0, 1] -> (B, D) pooled timm features."""

    def __init__(self, config: TimmConfig):
        super().__init__()
        timm = load_timm()
        config.validate()
        kwargs = {"global_pool": config.pooling} if config.pooling else {}
        self.net = timm.create_model(config.arch, pretrained=False, num_classes=0, in_chans=config.in_chans, **kwargs)
        self.config = replace(config, feature_dim=int(self.net.num_features))
        c = config.in_chans
        self.register_buffer("mean", torch.tensor(config.resolved_mean()).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.resolved_std()).view(1, c, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def backbone(self) -> nn.Module:
        """The trainable network (what fine-tuning optimises), as GalaxyEncoder.backbone."""
        return self.net

    def config_dict(self) -> dict:
        """What ml.checkpoints stores as ``encoder_config``."""
        return self.config.to_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.greyscale:  # Zoobot's ToGray: unweighted mean of the bands, to every input channel
            x = x.mean(dim=1, keepdim=True).expand(-1, self.config.in_chans, -1, -1)  # (B, C_in, S, S)
        elif x.shape[1] != self.config.in_chans:
            raise ValueError(f"images have {x.shape[1]} channels; the weights expect {self.config.in_chans}")
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.net(x)  # (B, D)


# ------------------------------------------------------------------ reading weights

def resolve_arch(name: str) -> str:
    """A timm architecture name; Zoobot hub names map to their architecture, typos get suggestions.

    ``hf_hub:mwalmsley/zoobot-encoder-convnext_nano`` -> ``convnext_nano`` (nothing is downloaded:
    the weights come from the local file).
    """
    timm = load_timm()
    name = (name or "").strip()
    if name.startswith("hf_hub:"):
        base = name.rsplit("/", 1)[-1]
        for prefix in ZOOBOT_HUB_PREFIXES:
            if base.startswith(prefix):
                base = base[len(prefix):]
                break
        if timm.is_model(base):
            return base
        raise CheckpointError(f"{name!r} is a hub name and nothing is downloaded here; give its timm architecture "
                              "(the 'architecture' field of the repository's config.json), e.g. convnext_nano")
    base = name.split(".", 1)[0]  # "convnext_nano.in12k" (a pretrained tag) -> "convnext_nano"
    if base and timm.is_model(base):
        return base
    names = timm.list_models()
    close = difflib.get_close_matches(base, names, n=5, cutoff=0.6)
    close += [n for n in timm.list_models(f"*{base}*")[:5] if n not in close] if base else []
    hint = f"; did you mean {', '.join(close[:6])}?" if close else "; timm.list_models() lists them all"
    raise CheckpointError(f"timm has no architecture {name!r}{hint}")


def read_state_dict(path: str | Path) -> dict:
    """{name: tensor} from a safetensors file or a torch file (``weights_only=True``: no pickled code)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        raise CheckpointError(f"weights file {path.name} does not exist") from None
    if len(head) > 8 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"not a readable safetensors file ({str(exc)[:200]})") from None
    import pickle
    import zipfile
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise CheckpointError("the file holds pickled Python objects that are not loaded for safety "
                              f"({first}); save just the encoder's weights, e.g. "
                              "safetensors.torch.save_file(model.encoder.state_dict(), 'encoder.safetensors')") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"not a readable safetensors or PyTorch weights file ({first})") from None
    return _unwrap(data)


def _unwrap(data) -> dict:
    """The tensor dict inside a Lightning checkpoint ({'state_dict': ...}), a timm train.py
    checkpoint ({'state_dict' / 'model': ...}) or a Latent Sky checkpoint ({'model': ...})."""
    for _ in range(3):
        if not isinstance(data, dict):
            break
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return dict(data)
        inner = next((data[k] for k in WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
        if inner is None:
            break
        data = inner
    kind = type(data).__name__
    raise CheckpointError(f"the file holds a {kind} that is not a state dict of tensors (nor a Lightning "
                          "checkpoint with one under 'state_dict')")


def _first_conv(timm, arch: str, state: dict) -> str:
    """Name of the first convolution's weight in the model's own key names."""
    cfg = timm.get_pretrained_cfg(arch)
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    if isinstance(first, (list, tuple)):
        first = first[0]
    if first:
        return f"{first}.weight"
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    return next(f"{n}.weight" for n, m in net.named_modules() if isinstance(m, nn.Conv2d))


def _strip_prefix(state: dict, anchor: str) -> tuple[dict, str]:
    """Drop a wrapper prefix ('encoder.', 'model.encoder.', 'module.', ...) found via the anchor key."""
    if anchor in state:
        return state, ""
    # 'encoder.conv1.weight' but also 'encoder.layer1.0.conv1.weight' end with 'conv1.weight': the shortest wins
    hits = sorted({k[: -len(anchor)] for k in state if k.endswith("." + anchor)}, key=len)
    if not hits:
        return state, ""
    prefix = hits[0]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, prefix


def encoder_from_weights(path: str | Path, arch: str, image_size: int | None = None, n_bands: int | None = None,
                         greyscale: bool = False, mean: list | None = None, std: list | None = None,
                         imagenet_norm: bool = False, pooling: str = "",
                         images_label: str = "") -> tuple[TimmEncoder, dict]:
    """A TimmEncoder with the file's weights, and a report {arch, prefix, dropped, in_chans}.

    ``n_bands``: bands of the survey images (default: the weights' channels), described in a
    channel-mismatch error by ``images_label`` (e.g. "survey sdss has 3 bands g,r,i"). With
    ``greyscale`` the bands are averaged into every input channel. ``imagenet_norm`` takes the
    architecture's pretrained mean/std (for ImageNet weights) instead of Zoobot's none.
    CheckpointError says what is wrong: unknown architecture, unreadable file, missing or
    unexpected keys, shape mismatches, a channel count the images cannot feed.
    """
    timm = load_timm()
    arch = resolve_arch(arch)
    state = read_state_dict(path)
    anchor = _first_conv(timm, arch, state)
    state, prefix = _strip_prefix(state, anchor)
    if anchor not in state:
        sample = ", ".join(list(state)[:4])
        raise CheckpointError(f"the weights do not look like a timm {arch}: no '{anchor}' (its first convolution) "
                              f"among {len(state)} tensors (e.g. {sample})")
    first = state[anchor]
    if first.ndim != 4:
        raise CheckpointError(f"'{anchor}' has shape {tuple(first.shape)}, not a convolution kernel")
    in_chans = int(first.shape[1])
    bands = int(n_bands or in_chans)
    if not greyscale and bands != in_chans:
        label = images_label or f"the images have {bands} band{'s' if bands > 1 else ''}"
        raise CheckpointError(f"the weights expect {in_chans} channel{'s' if in_chans > 1 else ''}; {label}; "
                              "choose greyscale to average the bands "
                              "(as Zoobot's greyscale models were trained), or use weights for "
                              f"{bands} channel{'s' if bands > 1 else ''}")
    pretrained = timm.get_pretrained_cfg(arch)
    if imagenet_norm and pretrained is not None:
        mean, std = list(pretrained.mean), list(pretrained.std)
        if len(mean) != in_chans:  # ImageNet statistics are per RGB channel; greyscale weights take their average
            mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
    size = int(image_size or (pretrained.input_size[-1] if pretrained is not None else 224))
    try:
        config = TimmConfig(arch=arch, in_chans=in_chans, n_bands=bands, image_size=size, mean=list(mean or []),
                            std=list(std or []), greyscale=bool(greyscale), pooling=pooling).validate()
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    model = TimmEncoder(config)
    classifier = getattr(pretrained, "classifier", None) if pretrained is not None else None
    heads = [classifier] if isinstance(classifier, str) else list(classifier or [])
    dropped = [k for k in state if any(k.startswith(h + ".") for h in heads)]
    for k in dropped:  # a classifier head saved with the weights: num_classes=0 has none
        del state[k]
    load_weights(model.net, state, arch)
    report = {"arch": arch, "prefix": prefix, "dropped_keys": len(dropped), "in_chans": in_chans,
              "tensors": len(state)}
    return model.eval(), report


def load_weights(net: nn.Module, state: dict, arch: str) -> None:
    """Strict load with a short, readable error (a few key names, the first shape mismatch)."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"the weights do not match timm {arch}: {len(missing)} missing key(s) "
                              f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}")
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"the weights do not match timm {arch}: {len(wrong)} tensor(s) differ in shape, "
                              f"e.g. {k} is {got}, expected {want}")
    net.load_state_dict(state, strict=True)


# ------------------------------------------------------------------ the app's checkpoint

def timm_preprocess(config: TimmConfig, bands: list, crop_fraction: float = 1.0) -> PreprocessConfig:
    """Crop + resize to the network size; pixels stay in [0, 1] (normalisation lives in TimmEncoder)."""
    n = len(bands)
    return PreprocessConfig(image_kind="rgb", bands=list(bands), image_size=config.image_size,
                            crop_fraction=float(crop_fraction), sky_sigma=[1.0] * n, softening=[1.0] * n,
                            offset=[0.0] * n, scale=[1.0] * n)


def parse_timm_checkpoint(data: dict) -> tuple[TimmEncoder, PreprocessConfig]:
    """ml.checkpoints.parse_checkpoint for ``encoder_config.kind == "timm"``."""
    try:
        config = TimmConfig.from_dict(dict(data["encoder_config"]))
        preprocess = PreprocessConfig.from_dict(dict(data["preprocess"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"bad config in checkpoint: {exc}") from None
    check_preprocess(preprocess, config.n_bands)
    if preprocess.image_kind != "rgb":
        raise CheckpointError("a timm encoder takes rgb images scaled to [0, 1]")
    try:
        model = TimmEncoder(config)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot build timm {config.arch}: {exc}") from None
    if config.feature_dim and model.feature_dim != config.feature_dim:
        raise CheckpointError(f"timm {config.arch} gives {model.feature_dim}-d features; the checkpoint says "
                              f"{config.feature_dim}")
    state = {k[len("net."):]: v for k, v in dict(data["model"]).items() if k.startswith("net.")}
    load_weights(model.net, state, config.arch)
    model.eval()
    return model, preprocess
