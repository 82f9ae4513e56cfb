"""Display stretches for survey cutouts: per-survey parameters and pixels -> uint8.

- ``flux`` surveys with >= 2 bands: a Lupton et al. (2004) asinh colour composite
  (astropy ``make_lupton_rgb``): bluest band -> blue, reddest -> red, a middle band
  (or, for two bands, their mean) -> green.  Colour is preserved where cores saturate.
- one band, and every single-band view: astropy ``AsinhStretch`` over a
  ``ManualInterval`` from the sky (0) to the survey's bright level, as greyscale.
- ``rgb`` surveys (JPEG cutouts already stretched to [0, 1]): passed through.

Parameters are chosen once per survey from a sample of its pixels
(``estimate_stretch``): each band is divided by its bright level (median over
images of the 99.5th-percentile pixel), then the asinh softening is solved so
that a 1-sigma sky pixel shows at NOISE_BRIGHTNESS and a typical core just
saturates.  One stretch per survey makes equal flux look equal across its
thumbnails, and two surveys of one sky comparable by eye.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from astropy.visualization import AsinhStretch, LuptonAsinhStretch, ManualInterval, make_lupton_rgb

NOISE_BRIGHTNESS = 0.06    # display value of a 1-sigma sky pixel: dark, yet faint structure shows
BRIGHT_PERCENTILE = 99.5   # per-image percentile that a typical galaxy core reaches
BORDER_PX = 4              # outer ring of a cutout used as "sky" for the noise estimate


@dataclass(frozen=True)
class SurveyStretch:
    """Display parameters of one survey, estimated from a sample of its images."""
    mode: str                       # "lupton" | "asinh" | "rgb"
    band_scale: tuple = ()          # per band: flux that maps to 1 after normalisation (bright level)
    band_noise: tuple = ()          # per band: robust sky sigma, in normalised units
    band_a: tuple = ()              # per band: AsinhStretch softening for greyscale band views
    rgb_bands: tuple = ()           # band indices shown as (red, green, blue); -1 = mean of red and blue
    lupton_q: float = 8.0           # asinh softening Q of the composite
    lupton_stretch: float = 0.5     # linear stretch of the composite, normalised units


MAX_SIGMA_PIXELS = 65536  # sky pixels used for a noise estimate; more only costs time


def _robust_sigma(values: np.ndarray) -> float:
    """astropy's mad_std (1.4826 x median absolute deviation): the Gaussian sigma, ignoring
    stars and galaxy wings; on a subsample of at most MAX_SIGMA_PIXELS pixels."""
    if values.size > MAX_SIGMA_PIXELS:
        values = values[:: values.size // MAX_SIGMA_PIXELS]
    return float(mad_std(values))


def _border(images: np.ndarray) -> np.ndarray:
    """Pixels of the outer ring of each cutout, per band: (C, n_pixels)."""
    b = BORDER_PX
    ring = np.concatenate([images[:, :, :b, :].reshape(*images.shape[:2], -1),
                           images[:, :, -b:, :].reshape(*images.shape[:2], -1),
                           images[:, :, b:-b, :b].reshape(*images.shape[:2], -1),
                           images[:, :, b:-b, -b:].reshape(*images.shape[:2], -1)], axis=2)  # (N, C, P)
    return ring.transpose(1, 0, 2).reshape(images.shape[1], -1)


def _bisect(f, lo: float, hi: float, target: float, increasing: bool, steps: int = 60) -> float:
    """x in [lo, hi] with f(x) ~= target for a monotonic f (geometric bisection); clamps."""
    if (f(lo) >= target) == increasing:
        return lo
    if (f(hi) <= target) == increasing:
        return hi
    for _ in range(steps):
        mid = float(np.sqrt(lo * hi))
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def lupton_parameters(noise: float, bright: float) -> tuple[float, float]:
    """(Q, stretch) so that intensity ``bright`` just saturates and 1-sigma sky shows at
    NOISE_BRIGHTNESS.  Q -> 0 is a linear stretch; larger Q compresses the bright end."""
    ratio = max(noise, 1e-12) / max(bright, 1e-12)

    def stretch_for(q):  # stretch that puts `bright` (=1 after normalisation) at display value 1
        return q / np.sinh(np.arcsinh(0.1 * q) / 0.1)

    def noise_display(q):
        return float(LuptonAsinhStretch(stretch=stretch_for(q), Q=q)(np.array([ratio]), clip=False)[0])
    q = _bisect(noise_display, 0.05, 30.0, NOISE_BRIGHTNESS, increasing=True)
    return q, float(stretch_for(q))


def asinh_softening(noise: float) -> float:
    """AsinhStretch ``a`` so that a 1-sigma pixel (``noise`` in interval units) displays at
    NOISE_BRIGHTNESS; a -> large is linear, a -> 0 lifts faint flux hard."""
    def noise_display(a):
        return float(AsinhStretch(a=a)(np.array([max(noise, 1e-12)]), clip=False)[0])
    return _bisect(noise_display, 1e-4, 10.0, NOISE_BRIGHTNESS, increasing=False)


def rgb_band_order(n_bands: int) -> tuple:
    """(red, green, blue) band indices for bands listed blue -> red, e.g. g,r,i -> (2, 1, 0)."""
    if n_bands == 2:
        return (1, -1, 0)
    return (n_bands - 1, n_bands // 2, 0)


def estimate_stretch(images: np.ndarray, image_kind: str) -> SurveyStretch:
    """Survey display parameters from a sample ``images`` (N, C, H, W) float32.

    Each band is first divided by its bright level (median over images of the
    99.5th percentile pixel), which white-balances to the survey's typical galaxy:
    red ellipticals still look redder than blue star-forming discs.
    """
    n_bands = images.shape[1]
    if image_kind == "rgb":
        return SurveyStretch(mode="rgb", band_scale=(1.0,) * n_bands, band_noise=(0.0,) * n_bands,
                             band_a=(1.0,) * n_bands, rgb_bands=(0, 1, 2)[:n_bands])
    per_image_bright = np.percentile(images.reshape(*images.shape[:2], -1), BRIGHT_PERCENTILE, axis=2)  # (N, C)
    scale = np.median(per_image_bright, axis=0)
    sky = _border(images)  # (C, P)
    sigma = np.array([_robust_sigma(sky[c]) for c in range(n_bands)])
    scale = np.where(scale > 0, scale, np.maximum(10 * sigma, 1e-6))
    noise = sigma / scale
    band_a = tuple(asinh_softening(float(n)) for n in noise)
    if n_bands == 1:
        return SurveyStretch(mode="asinh", band_scale=tuple(scale.tolist()), band_noise=tuple(noise.tolist()),
                             band_a=band_a)
    order = rgb_band_order(n_bands)
    normalised = images / scale.astype(np.float32)[None, :, None, None]
    intensity = sum(_channel(normalised, i, order) for i in order) / 3.0  # (N, H, W), as Lupton's I
    q, stretch = lupton_parameters(_robust_sigma(_border(intensity[:, None])[0]),
                                   float(np.median(np.percentile(intensity.reshape(len(images), -1),
                                                                 BRIGHT_PERCENTILE, axis=1))))
    return SurveyStretch(mode="lupton", band_scale=tuple(scale.tolist()), band_noise=tuple(noise.tolist()),
                         band_a=band_a, rgb_bands=order, lupton_q=q, lupton_stretch=stretch)


def _channel(images: np.ndarray, index: int, order: tuple) -> np.ndarray:
    """One display channel (N, H, W); index -1 is the mean of the red and blue bands."""
    if index == -1:
        return 0.5 * (images[:, order[0]] + images[:, order[2]])
    return images[:, index]


# ----------------------------------------------------------------- pixels -> uint8

def composite_rgb(image: np.ndarray, params: SurveyStretch) -> np.ndarray:
    """(C, H, W) float32 -> (H, W, 3) uint8 display colour image."""
    if params.mode == "rgb":
        rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if params.mode == "asinh":
        grey = band_grey(image, 0, params)
        return np.repeat(grey[:, :, None], 3, axis=2)
    norm = image / np.asarray(params.band_scale, dtype=np.float32)[:, None, None]
    r, g, b = (_channel(norm[None], i, params.rgb_bands)[0] for i in params.rgb_bands)
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by I before masking I <= 0
        return make_lupton_rgb(r, g, b, minimum=0.0, stretch=params.lupton_stretch, Q=params.lupton_q)


def band_grey(image: np.ndarray, band: int, params: SurveyStretch) -> np.ndarray:
    """One band of a (C, H, W) image as (H, W) uint8 greyscale (asinh, or linear for rgb)."""
    if params.mode == "rgb":
        values = image[band]
    else:
        # Interval from sky (0 after background subtraction) to the survey's bright level.
        values = ManualInterval(vmin=0.0, vmax=params.band_scale[band])(image[band], clip=True)
        values = AsinhStretch(a=params.band_a[band])(values, clip=True)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
