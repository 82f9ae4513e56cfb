"""ml/augment.py: every augmentation keeps the batch shape and keeps flux in its intended range."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.augment import (AsinhNormalise, AugmentConfig, Augmenter, BandFluxScale, LinearNormalise, Preprocess,
                        PreprocessConfig, PSFBlur, RandomFlip, RandomRotation, RandomScale, RandomShift, Reddening,
                        SkyNoise, _identity, fit_preprocess, resample)

pytestmark = pytest.mark.unit


def galaxies(b=6, c=3, size=32, seed=0) -> torch.Tensor:
    """(B, C, S, S) centred elliptical Gaussian blobs in nanomaggies, red bands brighter."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij")
    out = torch.empty(b, c, size, size)
    for i in range(b):
        width = 2.0 + 2.0 * torch.rand(1, generator=g).item()
        blob = torch.exp(-(xx ** 2 + (yy / 0.6) ** 2) / (2 * width ** 2))
        for k in range(c):
            out[i, k] = (10.0 + 5 * i) * (1 + 0.4 * k) * blob
    return out


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("aug", [RandomRotation(), RandomFlip(), RandomShift(0.1), RandomScale(0.8, 1.2)],
                         ids=lambda a: type(a).__name__)
def test_geometric_keeps_shape_and_range_and_total_flux(aug):
    x = galaxies()
    out = resample(x, aug.matrix(len(x), gen()), 32)
    assert out.shape == x.shape
    # bilinear weights are convex: no pixel leaves the input's range
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-4
    if not isinstance(aug, RandomScale):  # rotation/flip/shift move light around, they do not create it
        torch.testing.assert_close(out.sum((2, 3)), x.sum((2, 3)), rtol=0.03, atol=0.5)


def test_rotation_uses_any_angle_and_flip_mirrors():
    theta = RandomRotation().matrix(2000, gen())
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0])
    hist = torch.histc(angles, bins=8, min=-math.pi, max=math.pi)
    assert hist.min() > 150      # roughly uniform over the full circle, not just 90° steps
    flips = RandomFlip().matrix(1000, gen())[:, 0, 0]
    assert set(flips.tolist()) == {-1.0, 1.0} and 400 < (flips < 0).sum() < 600


def test_psf_blur_conserves_flux_widens_profile_and_stays_in_range():
    x = galaxies()
    out = PSFBlur(3.0)(x, gen())
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum((2, 3)), x.sum((2, 3)), rtol=0.02, atol=0.1)
    assert (out.amax((2, 3)) <= x.amax((2, 3)) + 1e-4).all()   # blurring lowers the peak
    assert out.min() >= x.min() - 1e-5
    assert torch.equal(PSFBlur(0.0)(x, gen()), x)


def test_sky_noise_matches_requested_sigma_per_band():
    x = torch.zeros(400, 3, 32, 32)
    out = SkyNoise([0.1, 0.2, 0.4], noise_max=1.0)(x, gen())
    measured = out.std(dim=(0, 2, 3))
    # level ~ U(0, 1) per image: overall std = sigma * sqrt(E[u^2]) = sigma / sqrt(3)
    np.testing.assert_allclose(measured.numpy(), np.array([0.1, 0.2, 0.4]) / math.sqrt(3), rtol=0.08)
    assert out.shape == x.shape


def test_reddening_dims_blue_more_than_red_within_bounds():
    x = torch.ones(500, 3, 4, 4)
    out = Reddening(["g", "r", "i"], max_ebv=0.2)(x, gen())
    ratio = out[:, :, 0, 0]
    assert (ratio <= 1).all() and (ratio >= 10 ** (-0.4 * 3.303 * 0.2) - 1e-6).all()
    assert (ratio[:, 0] <= ratio[:, 1]).all() and (ratio[:, 1] <= ratio[:, 2]).all()   # g dims most


def test_band_flux_scale_spread_matches_magnitudes():
    x = torch.ones(4000, 3, 2, 2)
    out = BandFluxScale(0.1)(x, gen())
    dm = -2.5 * torch.log10(out[:, :, 0, 0])
    assert abs(dm.std().item() - 0.1) < 0.01 and abs(dm.mean().item()) < 0.01
    assert (out > 0).all()


def test_asinh_is_linear_near_zero_logarithmic_when_bright_and_normalises():
    norm = AsinhNormalise([1.0], [0.0], [1.0])
    x = torch.tensor([0.01, 1000.0, 10000.0]).reshape(3, 1, 1, 1)
    y = norm(x).flatten()
    assert abs(y[0].item() - 0.01) < 1e-4
    assert abs((y[2] - y[1]).item() - math.log(10)) < 1e-3     # a factor 10 in flux -> +ln 10
    rgb = LinearNormalise([0.5], [0.25])(torch.tensor([[-0.2, 1.5]]).reshape(1, 1, 1, 2))
    assert rgb.flatten().tolist() == [-2.0, 2.0]                 # clamped to the JPEG range first


@pytest.mark.parametrize("kind, bands", [("flux", ["g", "r", "i"]), ("rgb", ["R", "G", "B"])])
def test_full_augmenter_and_preprocess_shapes_and_determinism(kind, bands):
    raw = galaxies(8, 3, 64) / (80.0 if kind == "rgb" else 1.0) + 0.01 * torch.randn(8, 3, 64, 64, generator=gen(3))
    raw = raw.clamp(0, 1) if kind == "rgb" else raw
    pre = fit_preprocess(raw.numpy(), kind, bands, image_size=32, crop_fraction=0.75)
    assert pre.image_kind == kind and len(pre.sky_sigma) == 3 and all(s > 0 for s in pre.scale)
    aug = Augmenter(pre, AugmentConfig())
    a, b = aug(raw, gen(5)), aug(raw, gen(5))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)        # same seed, same views
    assert not torch.equal(a, aug(raw, gen(6)))
    assert torch.isfinite(a).all() and a.abs().max() < 50          # normalised, not raw flux
    plain = Preprocess(pre)(raw)
    assert plain.shape == (8, 3, 32, 32) and torch.equal(plain, Preprocess(pre)(raw))
    assert abs(plain.mean().item()) < 0.5 and 0.3 < plain.std().item() < 2.0


def test_fit_preprocess_measures_sky_sigma_from_the_border():
    rng = np.random.default_rng(0)
    noisy = galaxies(64, 3, 32).numpy() + rng.normal(0, 0.5, (64, 3, 32, 32)).astype(np.float32)
    pre = fit_preprocess(noisy, "flux", ["g", "r", "i"], image_size=32, crop_fraction=1.0)
    np.testing.assert_allclose(pre.sky_sigma, 0.5, rtol=0.1)


def test_identity_resample_without_crop_is_exact():
    x = galaxies(2, 3, 32)
    torch.testing.assert_close(resample(x, _identity(2, "cpu"), 32, 1.0), x, atol=1e-5, rtol=1e-5)


def test_augment_config_validation():
    with pytest.raises(ValueError, match="scale_min"):
        AugmentConfig(scale_min=1.3, scale_max=1.0).validate()
    with pytest.raises(ValueError, match="noise_max"):
        AugmentConfig(noise_max=-1).validate()
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()
