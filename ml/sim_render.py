"""Draw one simulated object (a "scene" from ml.simulate) as a (3, H, W) stamp of a survey.

Units: nanomaggies per pixel, sky subtracted; band order ml.vocab.BANDS.

How a stamp is drawn (per survey: pixel scale, Moffat PSF, noise):
  1. Smooth components (Sersic bulges/ellipticals, exponential disks, inclined disks)
     are drawn with GalSim once each at unit flux, PSF-convolved, and added to every band
     scaled by their own g/r/i fluxes. Colour lives in the fluxes, so the PSF being
     achromatic lets one FFT draw serve all three bands.
  2. Structured components (spiral arms and HII clumps, rings, tidal tails, lensed
     arcs) are sums of round Gaussians or an analytic lens mapping, painted on a 2x
     oversampled padded grid, convolved with the PSF sampled on that grid, and binned
     down (binning = pixel response). Gaussian sums keep their flux exactly.
  3. Sky + source noise (Gaussian approximation of Poisson, per band).
  4. Artifacts that are not photons through the optics (cosmic rays) go on after the
     noise; a saturated star is clipped at the survey's saturation level and bleeds.
All randomness comes from the object's `seed` (structure: survey independent, so both
surveys show the same arms and knots) and (seed, survey) for noise.
"""
from __future__ import annotations

import functools
import math
import zlib

import galsim
import numpy as np
from scipy import fft as sp_fft

OVERSAMPLE = 2  # fine-grid subpixels per pixel for structured components
_STRUCTURE_STREAM, _NOISE_STREAM = 1, 2


def structure_rng(seed: int) -> np.random.Generator:
    """Survey-independent generator for knots, clumps and cosmic rays of one object."""
    return np.random.default_rng([int(seed), _STRUCTURE_STREAM])


def noise_rng(seed: int, survey_name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _NOISE_STREAM, zlib.crc32(survey_name.encode())])


@functools.lru_cache(maxsize=8)
def _psf(fwhm: float, beta: float) -> galsim.GSObject:
    return galsim.Moffat(beta=beta, fwhm=fwhm)


@functools.lru_cache(maxsize=8)
def _fine_setup(spec) -> tuple[int, int, int, np.ndarray]:
    """(pad, fine size m, kernel half-width, rfft of the fine PSF kernel) for a survey.

    The kernel is the PSF without pixel response (binning adds the pixel), +-3 FWHM,
    unit sum; its FFT is cached so each stamp costs one batched forward/inverse FFT.
    """
    pix, s = spec.pixel_scale, OVERSAMPLE
    pad = int(math.ceil(3.0 * spec.psf_fwhm / pix)) + 1  # native px of PSF spill-in margin
    m = (spec.stamp_size + 2 * pad) * s
    half = int(math.ceil(3.0 * spec.psf_fwhm / (pix / s)))
    kernel = _psf(spec.psf_fwhm, spec.psf_beta).drawImage(
        nx=2 * half + 1, ny=2 * half + 1, scale=pix / s, method="no_pixel").array
    size = sp_fft.next_fast_len(m + 2 * half, real=True)  # linear, not circular, convolution
    return pad, m, half, sp_fft.rfft2(kernel / kernel.sum(), s=(size, size))


def render_scene(row: dict, spec, noise: bool = True) -> np.ndarray:
    """One object (a catalogue row with 'params') in survey `spec`: (3, H, W) float32."""
    n, pix = spec.stamp_size, spec.pixel_scale
    comps = row["params"]["components"]
    model = np.zeros((3, n, n))  # (C, H, W) nanomaggies per pixel
    psf = _psf(spec.psf_fwhm, spec.psf_beta)
    for comp in comps:
        prof = _galsim_profile(comp)
        if prof is not None:
            img = galsim.Convolve(prof, psf).drawImage(nx=n, ny=n, scale=pix).array
            model += np.asarray(comp["flux"])[:, None, None] * img
    structured = [c for c in comps if c["kind"] in _FINE_PAINTERS]
    if structured:
        model += _render_fine(structured, spec, structure_rng(row["seed"]))
    art = row["params"].get("artifact") or {}
    if art.get("kind") == "satellite_trail":
        model += _trail(art, spec)
    if art.get("kind") == "saturated_star":
        model += _star(art, spec)
    image = model
    if noise:
        sigma, gain = spec.noise_sigma(), spec.electrons_per_nmgy()
        var = sigma[:, None, None] ** 2 + np.clip(model, 0, None) / gain[:, None, None]
        image = model + np.sqrt(var) * noise_rng(row["seed"], spec.name).standard_normal(model.shape)
    if art.get("kind") == "cosmic_ray":
        image = image + _cosmic_rays(art, spec, structure_rng(row["seed"] + 7919))
    if art.get("kind") == "saturated_star":
        image = _saturate_and_bleed(image, spec.saturation_nmgy, art["bleed_fraction"])
    return image.astype(np.float32)


# ---------------------------------------------------------------- smooth (GalSim FFT)
def _galsim_profile(comp: dict) -> galsim.GSObject | None:
    kind = comp["kind"]
    if kind == "sersic":
        n, hlr = comp["n"], comp["hlr"]
        prof = (galsim.Exponential(half_light_radius=hlr) if n == 1.0 else
                # truncating at 10 hlr keeps FFTs small for big high-n profiles; the
                # truncated profile is renormalised, so total flux stays comp["flux"]
                galsim.Sersic(n, half_light_radius=hlr, trunc=10.0 * hlr))
        prof = prof.shear(q=comp["q"], beta=comp["pa_deg"] * galsim.degrees)
    elif kind == "inclined_exp":
        prof = galsim.InclinedExponential(
            comp["incl_deg"] * galsim.degrees, half_light_radius=comp["hlr"],
            scale_h_over_r=comp["h_over_r"]).rotate(comp["pa_deg"] * galsim.degrees)
    else:
        return None
    return prof.shift(comp["x"], comp["y"])


# ---------------------------------------------------------------- structured (fine grid)
def _render_fine(comps: list[dict], spec, rng: np.random.Generator) -> np.ndarray:
    """Paint structured components on the padded fine grid, PSF-convolve, bin, crop."""
    n, s = spec.stamp_size, OVERSAMPLE
    pad, m, half, kernel_fft = _fine_setup(spec)
    coords = (np.arange(m) - (m - 1) / 2) * (spec.pixel_scale / s)  # fine centres, arcsec
    canvas = np.zeros((3, m, m))  # (C, Y, X) flux per fine pixel
    for comp in comps:
        canvas += _FINE_PAINTERS[comp["kind"]](comp, coords, rng)
    size = (kernel_fft.shape[0], kernel_fft.shape[0])
    conv = sp_fft.irfft2(sp_fft.rfft2(canvas, s=size) * kernel_fft, s=size)
    conv = conv[:, half:half + m, half:half + m]  # "same" alignment, (C, m, m)
    binned = conv.reshape(3, m // s, s, m // s, s).sum(axis=(2, 4))  # pixel response
    return binned[:, pad:pad + n, pad:pad + n]


def _paint_gaussians(x, y, sigma, weight, flux, coords) -> np.ndarray:
    """Sum of round Gaussians (arcsec) with relative weights, total band flux `flux`.

    Separable: each Gaussian is an outer product, so the sum is one matrix product
    (Y x K)(K x X) per band instead of K full-grid exponentials.
    """
    step = coords[1] - coords[0]
    sigma = np.maximum(sigma, 0.6 * step)  # below ~half a fine pixel sampling breaks flux
    norm = step / (np.sqrt(2 * np.pi) * sigma)
    gx = np.exp(-0.5 * ((coords[None, :] - x[:, None]) / sigma[:, None]) ** 2) * norm[:, None]
    gy = np.exp(-0.5 * ((coords[None, :] - y[:, None]) / sigma[:, None]) ** 2) * norm[:, None]
    w = weight / weight.sum()
    base = (gy * w[:, None]).T @ gx  # (Y, X), unit flux if fully on the grid
    return np.asarray(flux)[:, None, None] * base[None]


def _project(u, v, q, pa_deg, x0, y0):
    """Disk-plane (u, v) -> sky (x, y) arcsec: squash by axis ratio q, rotate by PA."""
    pa = math.radians(pa_deg)
    vq = v * q
    return (x0 + u * math.cos(pa) - vq * math.sin(pa), y0 + u * math.sin(pa) + vq * math.cos(pa))


def _chain(r0, r1, theta_of_r, width_of_r, spacing=0.6):
    """Points along a curve r -> theta(r), spaced `spacing` x local width (arcsec)."""
    radii = [r0]
    while radii[-1] < r1:
        r = radii[-1]
        dtheta_dr = (theta_of_r(r + 1e-3) - theta_of_r(r)) / 1e-3
        ds_dr = math.sqrt(1.0 + (r * dtheta_dr) ** 2)  # arc length per unit radius
        radii.append(r + spacing * width_of_r(r) / ds_dr)
    r = np.asarray(radii)
    return r, np.array([theta_of_r(v) for v in r]), np.array([width_of_r(v) for v in r])


def _paint_arms(c: dict, coords, rng) -> np.ndarray:
    """Logarithmic spiral arms of Gaussian clumps following the disk's exponential light."""
    rs = c["hlr"] / 1.678  # exponential scale length from half-light radius
    pitch = math.tan(math.radians(c["pitch_deg"]))
    r0, r1 = c["r_start"], c["r_end"]
    xs, ys, sig, w = [], [], [], []

    def width(r: float) -> float:  # arms widen outwards
        return c["width"] * (0.6 + 0.4 * r / c["hlr"])

    for arm in range(c["m"]):
        phase = c["phase"] + 2 * math.pi * arm / c["m"]

        def theta(r: float, phase: float = phase) -> float:  # log spiral, handedness ±1
            return phase + c["chirality"] * math.log(r / r0) / pitch

        r, th, sg = _chain(r0, r1, theta, width)
        jitter = 10 ** (c["clump_dex"] * rng.standard_normal(r.size))
        rise = 1.0 - np.exp(-((r / r0) ** 2))  # arms fade in from the bulge
        xs.append(r * np.cos(th))
        ys.append(r * np.sin(th))
        sig.append(sg)
        # weight ~ sigma^2 so the painted surface brightness follows the exponential disk
        w.append(np.exp(-r / rs) * rise * sg ** 2 * jitter)
    u, v, sig, w = (np.concatenate(a) for a in (xs, ys, sig, w))
    # HII-region knots: bright compact clumps sitting on random arm points.
    k = rng.choice(u.size, size=c["n_knots"], p=w / w.sum())
    ku = u[k] + 0.3 * sig[k] * rng.standard_normal(k.size)
    kv = v[k] + 0.3 * sig[k] * rng.standard_normal(k.size)
    ksig = np.full(k.size, c["knot_sigma"])
    kw = rng.uniform(0.5, 1.5, k.size)
    x, y = _project(np.concatenate([u, ku]), np.concatenate([v, kv]), c["q"], c["pa_deg"],
                    c["x"], c["y"])
    weights = np.concatenate([w / w.sum() * (1 - c["knot_frac"]), kw / kw.sum() * c["knot_frac"]])
    return _paint_gaussians(x, y, np.concatenate([sig, ksig]), weights, c["flux"], coords)


def _paint_ring(c: dict, coords, rng) -> np.ndarray:
    """Clumpy elliptical ring of radius R (arcsec): a collisional ring galaxy's wave."""
    n_pts = max(24, int(2 * math.pi * c["radius"] / (0.5 * c["width"])))
    phi = np.linspace(0, 2 * np.pi, n_pts, endpoint=False)
    w = 10 ** (c["clump_dex"] * rng.standard_normal(n_pts))
    x, y = _project(c["radius"] * np.cos(phi), c["radius"] * np.sin(phi), c["q"], c["pa_deg"],
                    c["x"], c["y"])
    return _paint_gaussians(x, y, np.full(n_pts, c["width"]), w, c["flux"], coords)


def _paint_tail(c: dict, coords, rng) -> np.ndarray:
    """Curved tidal tail: a fading, widening chain sweeping `sweep_deg` from its galaxy."""
    sweep = math.radians(c["sweep_deg"])
    r0, r1 = c["r_start"], c["r_end"]

    def theta(r: float) -> float:
        return math.radians(c["angle_deg"]) + sweep * (r - r0) / (r1 - r0)

    def width(r: float) -> float:
        return c["width"] * (0.7 + 0.6 * (r - r0) / (r1 - r0))

    r, th, sg = _chain(r0, r1, theta, width)
    t = (r - r0) / (r1 - r0)
    w = np.exp(-1.5 * t) * sg ** 2 * 10 ** (0.1 * rng.standard_normal(r.size))
    return _paint_gaussians(c["x"] + r * np.cos(th), c["y"] + r * np.sin(th), sg, w,
                            c["flux"], coords)


def _paint_lensed_source(c: dict, coords, rng) -> np.ndarray:
    """Singular isothermal sphere + external shear lensing an exponential blob.

    Lens equation beta = theta - theta_E theta/|theta| - Gamma theta; surface brightness
    is conserved, so arcs and rings appear where the source maps near the caustic.
    Sampled 2x finer than the fine grid, then normalised to the arc flux `flux`.
    """
    step = coords[1] - coords[0]
    sub = (coords[:, None] + (np.array([-0.25, 0.25]) * step)[None, :]).reshape(-1)
    tx, ty = np.meshgrid(sub - c["x"], sub - c["y"])  # (Y, X) arcsec from the lens centre
    rad = np.hypot(tx, ty) + 1e-9
    g1, g2 = c["shear"]
    bx = tx - c["theta_e"] * tx / rad - (g1 * tx + g2 * ty) - c["src_x"]
    by = ty - c["theta_e"] * ty / rad - (g2 * tx - g1 * ty) - c["src_y"]
    pa = math.radians(c["src_pa_deg"])
    bu = bx * math.cos(pa) + by * math.sin(pa)
    bv = (-bx * math.sin(pa) + by * math.cos(pa)) / c["src_q"]
    sb = np.exp(-np.hypot(bu, bv) / (c["src_hlr"] / 1.678))
    img = sb.reshape(coords.size, 2, coords.size, 2).sum(axis=(1, 3))
    return np.asarray(c["flux"])[:, None, None] * (img / img.sum())[None]


_FINE_PAINTERS = {"arms": _paint_arms, "ring": _paint_ring, "tail": _paint_tail,
                  "lensed_source": _paint_lensed_source}


# ---------------------------------------------------------------- artifacts (native px)
def _pixel_grid(spec):
    """Native pixel centres relative to the stamp centre, in pixels: (Y, X) arrays."""
    c = np.arange(spec.stamp_size) - (spec.stamp_size - 1) / 2
    return np.meshgrid(c, c, indexing="ij")


def _trail(a: dict, spec) -> np.ndarray:
    """Satellite trail: unresolved moving source, so a PSF-wide straight line."""
    yy, xx = _pixel_grid(spec)
    ang = math.radians(a["angle_deg"])
    dist = xx * math.sin(ang) - yy * math.cos(ang) - a["offset"] * spec.stamp_size / 2
    sig = spec.psf_fwhm / 2.355 / spec.pixel_scale
    line = a["density"] * spec.pixel_scale * np.exp(-0.5 * (dist / sig) ** 2) / (math.sqrt(2 * math.pi) * sig)
    return np.asarray(a["band_weights"])[:, None, None] * line[None]


def _star(a: dict, spec) -> np.ndarray:
    """Bright star: PSF at its sky offset plus four diffraction spikes from the spider."""
    n, pix = spec.stamp_size, spec.pixel_scale
    # Sampled, not FFT-drawn: at ~1e4 nanomaggies FFT aliasing would show as stripes,
    # and the pixel-integrated core is clipped by saturation anyway.
    core = _psf(spec.psf_fwhm, spec.psf_beta).drawImage(
        nx=n, ny=n, scale=pix, offset=(a["x"] / pix, a["y"] / pix), method="no_pixel").array
    yy, xx = _pixel_grid(spec)
    dx, dy = xx - a["x"] / pix, yy - a["y"] / pix
    sig = max(0.7, 0.25 * spec.psf_fwhm / pix)  # narrow, but >0.7 px or diagonals alias
    core_px = spec.psf_fwhm / pix
    spikes = np.zeros((n, n))
    for k in range(4):
        ang = math.radians(spec.spike_angle_deg + 90 * k)
        along = dx * math.cos(ang) + dy * math.sin(ang)
        across = -dx * math.sin(ang) + dy * math.cos(ang)
        spikes += np.where(along > 0, np.exp(-0.5 * (across / sig) ** 2) /
                           (1 + (along / core_px) ** 2), 0.0)
    shape = core + a["spike_strength"] * spikes / (2 * math.pi * sig * core_px)
    return np.asarray(a["flux"])[:, None, None] * shape[None]


def _cosmic_rays(a: dict, spec, rng) -> np.ndarray:
    """Cosmic-ray hits: sharp (no PSF) single pixels or short worms in one band each."""
    n = spec.stamp_size
    out = np.zeros((3, n, n))
    sigma = spec.noise_sigma()
    for _ in range(a["n_hits"]):
        band = int(rng.integers(3))
        length = 1 if rng.random() < 0.4 else int(rng.integers(2, 9))
        ang = rng.uniform(0, 2 * np.pi)
        x0, y0 = rng.uniform(4, n - 4, size=2)
        amp = a["amp_sigma"] * sigma[band] * rng.uniform(0.6, 1.0)
        for t in range(length):
            xi, yi = int(round(x0 + t * math.cos(ang))), int(round(y0 + t * math.sin(ang)))
            if 0 <= xi < n and 0 <= yi < n:
                out[band, yi, xi] += amp * rng.uniform(0.7, 1.0)
    return out


def _saturate_and_bleed(image: np.ndarray, level: float, bleed_fraction: float) -> np.ndarray:
    """Clip at the full-well level; a fraction of the excess charge bleeds along columns."""
    out = image.copy()
    n = image.shape[-1]
    for b in range(image.shape[0]):
        excess = np.clip(image[b] - level, 0, None)
        for col in np.flatnonzero(excess.sum(axis=0) > 0):
            rows = np.flatnonzero(excess[:, col] > 0)
            extra = int(bleed_fraction * excess[:, col].sum() / level / 2)
            lo, hi = max(0, rows.min() - extra), min(n, rows.max() + 1 + extra)
            out[b, lo:hi, col] = level
        out[b] = np.minimum(out[b], level)
    return out
