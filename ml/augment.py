"""Astronomy-aware augmentations for contrastive learning, applied to whole batches on the device.

Every random augmentation is a small class whose docstring names the physical effect it
models, so that the network learns to ignore it (Hayat et al. 2021 for SDSS). Inputs are
raw survey pixels (B, C, H, W) float32: flux (e.g. nanomaggies per pixel, sky subtracted)
or RGB in [0, 1]. ``Preprocess`` (deterministic; ml.embed uses the same one) resizes to the
encoder's size and normalises; ``Augmenter`` inserts the random views in front of the
normalisation. Randomness comes only from the ``torch.Generator`` passed in, so a seed
reproduces every view exactly.

Geometric augmentations (rotation, flip, jitter, scale) each provide a 2×3 affine matrix;
``Augmenter`` multiplies them and resamples once, which is cheaper and blurs less than
four separate resamplings.

Written by hand rather than with kornia: kornia is not installed, torchvision does not
import beside torch 2.13 CPU, and each piece here is a few lines of torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch.nn import functional as F

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: Gaussian FWHM / sigma
# Extinction A_band / E(B-V) for SDSS-like filters (Schlafly & Finkbeiner 2011, R_V = 3.1).
EXTINCTION_R = {"u": 4.239, "g": 3.303, "r": 2.285, "i": 1.698, "z": 1.263, "y": 1.058}
# SDSS colour JPEGs map i, r, g to R, G, B (Lupton et al. 2004), so reddening follows suit.
RGB_AS_BANDS = {"R": "i", "G": "r", "B": "g"}


@dataclass
class AugmentConfig:
    """Strength of each augmentation; a value of 0 (or False) switches that one off."""
    rotate: bool = True  # uniform position angle in [0, 360)
    flip: bool = True  # mirror with probability 1/2
    max_shift: float = 0.06  # centring jitter, fraction of the image side (0.06 * 32 px ≈ 2 px)
    scale_min: float = 0.85  # apparent-size range (zoom); < 1 zooms out
    scale_max: float = 1.15
    blur_fwhm_max: float = 1.5  # extra Gaussian PSF FWHM in output pixels, uniform in [0, max]
    noise_max: float = 1.0  # added Gaussian noise, uniform in [0, max] × the survey's sky sigma
    flux_scale_sigma: float = 0.1  # per-band zero-point scatter in magnitudes (log-normal gain)
    reddening_max_ebv: float = 0.05  # Galactic dust E(B-V), uniform in [0, max]

    def validate(self) -> "AugmentConfig":
        checks = [
            (0 <= self.max_shift <= 0.3, "max_shift must be between 0 and 0.3 of the image side"),
            (0.3 <= self.scale_min <= self.scale_max <= 3.0, "need 0.3 ≤ scale_min ≤ scale_max ≤ 3"),
            (0 <= self.blur_fwhm_max <= 8, "blur_fwhm_max must be between 0 and 8 pixels"),
            (0 <= self.noise_max <= 10, "noise_max must be between 0 and 10 × the sky sigma"),
            (0 <= self.flux_scale_sigma <= 1, "flux_scale_sigma must be between 0 and 1 mag"),
            (0 <= self.reddening_max_ebv <= 1, "reddening_max_ebv must be between 0 and 1 mag"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


@dataclass
class PreprocessConfig:
    """How raw store pixels become network input. Fitted on training data, saved in checkpoints."""
    image_kind: str = "flux"  # "flux" (physical units, asinh stretch) or "rgb" (already stretched, [0, 1])
    bands: list = field(default_factory=lambda: ["g", "r", "i"])  # band order of the input
    image_size: int = 32  # network input side, pixels
    crop_fraction: float = 0.75  # centre fraction of the stored cutout kept (galaxy fills the centre)
    sky_sigma: list = field(default_factory=lambda: [1.0, 1.0, 1.0])  # per-band sky noise, store units
    softening: list = field(default_factory=lambda: [1.0, 1.0, 1.0])  # asinh softening per band, store units
    offset: list = field(default_factory=lambda: [0.0, 0.0, 0.0])  # subtracted after the stretch
    scale: list = field(default_factory=lambda: [1.0, 1.0, 1.0])  # divided after the stretch (unit variance)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"preprocess config has unknown field(s) {unknown}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ geometry

def _identity(batch: int, device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).expand(batch, 2, 3).clone()  # (B, 2, 3)


def _uniform(batch: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(batch, generator=gen, device=gen.device)  # (B,)


def _compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Affine a∘b for (B, 2, 3) matrices in normalised grid coordinates."""
    bottom = torch.tensor([0.0, 0.0, 1.0], device=a.device).expand(a.shape[0], 1, 3)
    return torch.bmm(torch.cat([a, bottom], 1), torch.cat([b, bottom], 1))[:, :2]


def resample(x: torch.Tensor, theta: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """Sample (B, C, H, W) at the affine ``theta`` (B, 2, 3) onto (B, C, size, size).

    The output covers the centre ``crop_fraction`` of the input. The input is first
    area-resized so the output pixel matches the input pixel (no aliasing of the noise);
    bilinear weights are convex, so every output pixel lies within the input's range.
    """
    work = max(size, int(round(size / crop_fraction)))
    if x.shape[-1] > work or x.shape[-2] > work:  # downsampling: average first, no aliasing
        x = F.interpolate(x, size=(work, work), mode="bilinear", antialias=True, align_corners=False)
    # output p in [-1, 1]^2 samples input at crop_fraction * (A p + t): the centre crop
    grid = F.affine_grid((theta * crop_fraction).to(x.dtype), (x.shape[0], x.shape[1], size, size),
                         align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class RandomRotation:
    """Position angle on the sky: a galaxy's orientation is arbitrary, so any angle is as likely."""

    def matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        angle = _uniform(batch, 0.0, 2 * math.pi, gen)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = _identity(batch, gen.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        return theta


class RandomFlip:
    """Parity: a mirrored galaxy is a plausible galaxy seen from the other side (chirality aside)."""

    def matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        sign = torch.where(torch.rand(batch, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
        theta = _identity(batch, gen.device)
        theta[:, 0, 0] = sign
        return theta


class RandomShift:
    """Centring error: detection centroids and cutout centres are off by a pixel or two."""

    def __init__(self, max_shift: float):
        self.max_shift = max_shift  # fraction of the image side

    def matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        theta = _identity(batch, gen.device)
        # normalised coordinates span 2 per side, so a shift of f of the side is 2f
        theta[:, 0, 2] = _uniform(batch, -2 * self.max_shift, 2 * self.max_shift, gen)
        theta[:, 1, 2] = _uniform(batch, -2 * self.max_shift, 2 * self.max_shift, gen)
        return theta


class RandomScale:
    """Apparent size: the same galaxy at another distance, or imaged at another pixel scale
    (SDSS 0.396″ vs DES 0.263″ per pixel), covers more or fewer pixels."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi

    def matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        # log-uniform zoom; sampling the grid with 1/zoom enlarges the galaxy by zoom
        zoom = torch.exp(_uniform(batch, math.log(self.lo), math.log(self.hi), gen))
        theta = _identity(batch, gen.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
        return theta


# ------------------------------------------------------------------ photometry

def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B,) sigmas in pixels -> (B, 2r+1) normalised 1-D kernels (sigma 0 -> a delta)."""
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)  # (K,)
    s = sigma.clamp_min(1e-3)[:, None]  # (B, 1)
    k = torch.exp(-0.5 * (taps[None] / s) ** 2)  # (B, K)
    return k / k.sum(1, keepdim=True)


class PSFBlur:
    """Seeing: the atmosphere and optics blur each exposure by a PSF whose FWHM varies from
    night to night; convolving with a Gaussian of random FWHM mimics a worse-seeing image.
    Kernels are normalised, so total flux is conserved."""

    def __init__(self, fwhm_max: float):
        self.fwhm_max = fwhm_max  # output pixels

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.fwhm_max <= 0:
            return x
        b, c, h, w = x.shape
        sigma = _uniform(b, 0.0, self.fwhm_max, gen) / FWHM_PER_SIGMA  # (B,)
        radius = max(1, math.ceil(3 * self.fwhm_max / FWHM_PER_SIGMA))
        k = gaussian_kernels(sigma, radius).to(x.dtype).repeat_interleave(c, 0)  # (B*C, K)
        flat = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
        flat = F.conv2d(flat, k[:, None, None, :], groups=b * c)  # along x
        flat = F.conv2d(flat, k[:, None, :, None], groups=b * c)  # along y
        return flat.reshape(b, c, h, w)


class SkyNoise:
    """Depth: shallower exposures carry more sky photon and read noise. Adds Gaussian noise of
    sigma = u × the survey's per-band sky sigma, u uniform in [0, noise_max]."""

    def __init__(self, sky_sigma, noise_max: float):
        self.sky_sigma = torch.as_tensor(sky_sigma, dtype=torch.float32)  # (C,)
        self.noise_max = noise_max

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.noise_max <= 0:
            return x
        level = _uniform(x.shape[0], 0.0, self.noise_max, gen)  # (B,)
        sigma = level[:, None] * self.sky_sigma.to(x.device)[None]  # (B, C)
        noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
        return x + noise * sigma[:, :, None, None]


class BandFluxScale:
    """Photometric calibration: each band's zero point is uncertain by a few hundredths to a
    tenth of a magnitude, so per-band fluxes are scaled by 10^(-0.4 Δm), Δm ~ N(0, sigma)."""

    def __init__(self, sigma_mag: float):
        self.sigma_mag = sigma_mag

    def factors(self, batch: int, channels: int, gen: torch.Generator) -> torch.Tensor:
        dm = torch.randn(batch, channels, generator=gen, device=gen.device) * self.sigma_mag
        return 10.0 ** (-0.4 * dm)  # (B, C)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.sigma_mag <= 0:
            return x
        return x * self.factors(x.shape[0], x.shape[1], gen)[:, :, None, None].to(x.dtype)


class Reddening:
    """Galactic dust: extinction A_b = R_b · E(B-V) dims blue bands more than red ones
    (Schlafly & Finkbeiner 2011 coefficients), as in Hayat et al. 2021."""

    def __init__(self, bands, max_ebv: float):
        names = [RGB_AS_BANDS.get(b, b) for b in bands]
        # bands without a known coefficient get the mean (a grey dimming)
        mean_r = sum(EXTINCTION_R.values()) / len(EXTINCTION_R)
        self.coeff = torch.tensor([EXTINCTION_R.get(n, mean_r) for n in names], dtype=torch.float32)  # (C,)
        self.max_ebv = max_ebv

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.max_ebv <= 0:
            return x
        ebv = _uniform(x.shape[0], 0.0, self.max_ebv, gen)  # (B,)
        factor = 10.0 ** (-0.4 * ebv[:, None] * self.coeff.to(x.device)[None])  # (B, C), ≤ 1
        return x * factor[:, :, None, None].to(x.dtype)


# ------------------------------------------------------------------ normalisation

class AsinhNormalise:
    """Dynamic range: galaxy cores are thousands of times brighter than their outskirts.
    asinh(x / b) is linear below the softening b (≈ sky noise) and logarithmic above it,
    like Lupton et al. 1999 asinh magnitudes; then (· - offset) / scale per band."""

    def __init__(self, softening, offset, scale):
        self.softening = torch.as_tensor(softening, dtype=torch.float32)[None, :, None, None]  # (1, C, 1, 1)
        self.offset = torch.as_tensor(offset, dtype=torch.float32)[None, :, None, None]
        self.scale = torch.as_tensor(scale, dtype=torch.float32)[None, :, None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device
        return (torch.asinh(x / self.softening.to(dev)) - self.offset.to(dev)) / self.scale.to(dev)


class LinearNormalise:
    """Colour JPEGs are already asinh-stretched by the survey pipeline (Lupton et al. 2004), so
    only (x - offset) / scale per channel; pixels are kept in [0, 1] first (JPEG range)."""

    def __init__(self, offset, scale):
        self.offset = torch.as_tensor(offset, dtype=torch.float32)[None, :, None, None]
        self.scale = torch.as_tensor(scale, dtype=torch.float32)[None, :, None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.clamp(0.0, 1.0) - self.offset.to(x.device)) / self.scale.to(x.device)


def normaliser(config: PreprocessConfig):
    if config.image_kind == "rgb":
        return LinearNormalise(config.offset, config.scale)
    return AsinhNormalise(config.softening, config.offset, config.scale)


# ------------------------------------------------------------------ pipelines

class Preprocess:
    """Deterministic: centre crop + resize to the encoder size, then normalise. Used to embed."""

    def __init__(self, config: PreprocessConfig):
        self.config = config
        self.normalise = normaliser(config)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) raw -> (B, C, S, S)
        theta = _identity(x.shape[0], x.device)
        return self.normalise(resample(x, theta, self.config.image_size, self.config.crop_fraction))


class Augmenter:
    """Random view of a raw batch: geometry (one resample) → PSF blur → reddening and flux
    scale → sky noise → normalisation. Same output shape and units as Preprocess."""

    def __init__(self, preprocess: PreprocessConfig, augment: AugmentConfig):
        self.pre, self.aug = preprocess, augment.validate()
        self.geometry = ([RandomRotation()] if augment.rotate else []) + \
                        ([RandomFlip()] if augment.flip else []) + \
                        [RandomScale(augment.scale_min, augment.scale_max), RandomShift(augment.max_shift)]
        self.photometry = [PSFBlur(augment.blur_fwhm_max),
                           Reddening(preprocess.bands, augment.reddening_max_ebv),
                           BandFluxScale(augment.flux_scale_sigma),
                           SkyNoise(preprocess.sky_sigma, augment.noise_max)]
        self.normalise = normaliser(preprocess)

    def geometry_matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        theta = _identity(batch, gen.device)
        for aug in self.geometry:
            theta = _compose(theta, aug.matrix(batch, gen))
        return theta  # (B, 2, 3)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        theta = self.geometry_matrix(x.shape[0], gen).to(x.device)
        x = resample(x, theta, self.pre.image_size, self.pre.crop_fraction)  # (B, C, S, S)
        for aug in self.photometry:
            x = aug(x, gen)
        return self.normalise(x)


def robust_sigma(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """1.4826 × median absolute deviation: the Gaussian sigma, insensitive to galaxies and stars."""
    med = values.median(dim=dim, keepdim=True).values
    return 1.4826 * (values - med).abs().median(dim=dim).values


def fit_preprocess(sample, image_kind: str, bands, image_size: int, crop_fraction: float = 0.75,
                   border: int = 3) -> PreprocessConfig:
    """Per-band sky sigma, asinh softening and normalisation offsets from a sample of raw images.

    ``sample`` is (N, C, H, W) (a few hundred cutouts suffice). The sky sigma is measured
    on the border pixels of the resized crop, i.e. at the encoder's resolution, which is
    where SkyNoise adds noise. Softening = sky sigma keeps the noise in the linear part
    of the asinh. Offset/scale make every band roughly zero-mean, unit-variance.
    """
    x = torch.as_tensor(sample, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != len(bands):
        raise ValueError(f"sample shape {tuple(x.shape)} does not match {len(bands)} bands")
    if image_kind not in ("flux", "rgb"):
        raise ValueError(f"image_kind must be 'flux' or 'rgb', not {image_kind!r}")
    config = PreprocessConfig(image_kind=image_kind, bands=list(bands), image_size=int(image_size),
                              crop_fraction=float(crop_fraction))
    resized = resample(x, _identity(x.shape[0], x.device), image_size, crop_fraction)  # (N, C, S, S)
    frame = torch.ones(image_size, image_size, dtype=torch.bool)
    frame[border:-border, border:-border] = False
    edge = resized[:, :, frame].transpose(0, 1).reshape(len(bands), -1)  # (C, N*F)
    sigma = robust_sigma(edge).clamp_min(1e-6)
    config.sky_sigma = [float(s) for s in sigma]
    config.softening = list(config.sky_sigma)
    stretched = Preprocess(config).normalise(resized)  # offset 0, scale 1 so far
    per_band = stretched.transpose(0, 1).reshape(len(bands), -1)
    config.offset = [float(v) for v in per_band.mean(1)]
    config.scale = [float(v) for v in per_band.std(1).clamp_min(1e-6)]
    return config
