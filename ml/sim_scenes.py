"""Scenes of the simulated population: what each object IS, independent of any survey.

A scene is a list of light components (dicts with a "kind", an (x, y) centre offset in
arcsec and "flux": total [g, r, i] nanomaggies) plus an optional artifact. The renderer
(ml.sim_render) turns a scene into pixels for a given survey.

Population recipe (numbers are for low-redshift, SDSS-main-sample-like galaxies):
  elliptical  Sersic n 3-5.5, red (g-r ~0.78, r-i ~0.40), axis ratio 0.55-1
  spiral      bulge (B/T 5-35%, red) + exponential disk + logarithmic arms with HII
              knots (blue, g-r ~0.25); inclination < 55 deg
  edge_on     inclined (82-90 deg) thin exponential disk, dust-reddened, small bulge
  merger      two overlapping Sersic galaxies + 1-2 blue tidal tails
  rarities    lens: blue arc/ring (SIS + shear) around an elliptical; ring: collisional
              ring galaxy (class stays "spiral"); satellite_trail; cosmic_ray;
              saturated_star. Artifacts are the same in both surveys (same truth).
Every object's parameters come from its own seed streams (id-keyed), so an object does
not change when another object's class or rarity does.
"""
from __future__ import annotations

import math

import numpy as np

from ml.vocab import CLASSES, EDGE_ON, ELLIPTICAL, LENS, MERGER, NONE, RARITIES, RING, SPIRAL

# (mean g-r, sd g-r, mean r-i, sd r-i) of each stellar population.
RED = (0.78, 0.04, 0.40, 0.03)  # old bulges and ellipticals
DISK = (0.50, 0.07, 0.25, 0.05)  # smooth disks of spirals
YOUNG = (0.25, 0.07, 0.08, 0.05)  # star-forming arms, knots, rings
DUSTY = (0.68, 0.06, 0.34, 0.04)  # edge-on disks seen through their dust
TAIL = (0.45, 0.08, 0.20, 0.05)  # tidal debris
ARC = (0.10, 0.08, 0.05, 0.08)  # lensed high-redshift star-forming sources
_GALAXY_STREAM, _RARITY_STREAM = 10, 11


def make_population(cfg) -> list[dict]:
    """Exact class counts, rarities on suitable hosts, uniform positions on the patch."""
    rng = np.random.default_rng(cfg.seed)
    classes = _exact_labels(rng, cfg.n, cfg.class_fractions)
    rarities = np.full(cfg.n, NONE, dtype=object)
    unknown = set(cfg.rarity_weights) - set(RARITIES) | {NONE} & set(cfg.rarity_weights)
    if unknown:
        raise ValueError(f"unknown rarity kinds {sorted(unknown)}; known: {RARITIES[1:]}")
    counts = _largest_remainder(round(cfg.n * cfg.rarity_fraction), cfg.rarity_weights)
    hosts = {LENS: ELLIPTICAL, RING: SPIRAL}  # lenses are massive ellipticals; rings disks
    for kind, k in counts.items():
        free = np.flatnonzero((rarities == NONE) & ((classes == hosts[kind]) if kind in hosts else True))
        rarities[rng.choice(free, size=min(k, free.size), replace=False)] = kind
    ra0, dec0 = cfg.sky_centre_deg
    dec = dec0 + (rng.random(cfg.n) - 0.5) * cfg.sky_size_deg
    ra = (ra0 + (rng.random(cfg.n) - 0.5) * cfg.sky_size_deg / math.cos(math.radians(dec0))) % 360
    return [make_object(cfg, i, str(classes[i]), str(rarities[i]), float(ra[i]), float(dec[i]))
            for i in range(cfg.n)]


def make_object(cfg, obj_id: int, cls: str, rarity: str = NONE,
                ra: float = 0.0, dec: float = 0.0) -> dict:
    """One catalogue row: truth columns plus params = {"components", "artifact"}.

    The galaxy depends only on (cfg.seed, obj_id, cls), the rarity only on
    (cfg.seed, obj_id, rarity): make_object(cfg, 7, "spiral", "cosmic_ray") is
    make_object(cfg, 7, "spiral") plus cosmic rays, pixel for pixel after rendering.
    """
    seed = int(np.random.SeedSequence([cfg.seed, obj_id]).generate_state(1)[0])
    g_rng = np.random.default_rng([seed, _GALAXY_STREAM])
    mag = _draw_mag(g_rng, cfg.mag_range)
    flux_r = 10 ** ((22.5 - mag) / 2.5)
    x0, y0 = g_rng.uniform(-0.2, 0.2, 2)  # arcsec: catalogue centres are not pixel exact
    comps, core = _BUILDERS[cls](g_rng, mag, flux_r, x0, y0)
    r_rng = np.random.default_rng([seed, _RARITY_STREAM])
    artifact = None
    if rarity == LENS:
        comps, core = _lensed(r_rng, comps, core, flux_r, x0, y0)
    elif rarity == RING:
        comps = _ring_galaxy(r_rng, core, flux_r, x0, y0)
    elif rarity != NONE:
        artifact = _ARTIFACTS[rarity](r_rng)
    total = np.sum([c["flux"] for c in comps if c["kind"] != "lensed_source"], axis=0)
    mags = 22.5 - 2.5 * np.log10(total)
    return {"id": int(obj_id), "ra": ra, "dec": dec, "class": cls, "rarity": rarity,
            "mag_g": float(mags[0]), "mag_r": float(mags[1]), "mag_i": float(mags[2]),
            "g_r": float(mags[0] - mags[1]), "r_i": float(mags[1] - mags[2]),
            **core, "seed": seed,
            "params": _plain({"components": comps, "artifact": artifact,
                              "offset": [x0, y0]})}  # light centre - cutout centre, arcsec


# ------------------------------------------------------------------ helpers
def _plain(obj):
    """numpy scalars -> Python numbers, so the catalogue is JSON-serialisable."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


def _exact_labels(rng, n: int, fractions: dict) -> np.ndarray:
    counts = _largest_remainder(n, fractions)
    unknown = set(counts) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; known: {CLASSES}")
    labels = np.concatenate([np.full(k, c, dtype=object) for c, k in counts.items()])
    return labels[rng.permutation(n)]


def _largest_remainder(n: int, weights: dict) -> dict[str, int]:
    """Integer counts summing to n, proportional to weights (Hamilton apportionment)."""
    w = np.asarray(list(weights.values()), float)
    quota = n * w / w.sum()
    counts = np.floor(quota).astype(int)
    counts[np.argsort(-(quota - counts))[: n - counts.sum()]] += 1
    return dict(zip(weights, counts.tolist()))


def _draw_mag(rng, mag_range) -> float:
    """r mag with counts rising towards the faint end, dN/dm ~ 10^(0.3 m)."""
    lo, hi = (10 ** (0.3 * m) for m in mag_range)
    return float(math.log10(lo + rng.random() * (hi - lo)) / 0.3)


def _size(rng, hlr16: float, mag: float, lo: float, hi: float) -> float:
    """Half-light radius (arcsec): hlr16 at r=16, brighter is bigger, 0.1 dex scatter."""
    return float(np.clip(hlr16 * 10 ** (-0.15 * (mag - 16) + 0.1 * rng.standard_normal()), lo, hi))


def _fluxes(rng, flux_r: float, pop) -> list[float]:
    g_r = pop[0] + pop[1] * rng.standard_normal()
    r_i = pop[2] + pop[3] * rng.standard_normal()
    return [flux_r * 10 ** (-0.4 * g_r), flux_r, flux_r * 10 ** (0.4 * r_i)]


def _n(value: float) -> float:
    """Sersic index on a 0.25 grid: GalSim caches one profile table per distinct n."""
    return round(value * 4) / 4


def _sersic(n, hlr, q, pa, x, y, flux) -> dict:
    return {"kind": "sersic", "n": float(n), "hlr": float(hlr), "q": float(q),
            "pa_deg": float(pa), "x": float(x), "y": float(y), "flux": flux}


def _core(hlr, n, q, pa) -> dict:
    return {"hlr_arcsec": float(hlr), "sersic_n": float(n), "ellipticity": float(1 - q),
            "pa_deg": float(pa)}


# ------------------------------------------------------------------ classes
def _elliptical(rng, mag, f, x0, y0):
    hlr, n = _size(rng, 1.5, mag, 0.6, 4.0), _n(rng.uniform(3.0, 5.5))
    q, pa = rng.uniform(0.55, 1.0), rng.uniform(0, 180)
    return [_sersic(n, hlr, q, pa, x0, y0, _fluxes(rng, f, RED))], _core(hlr, n, q, pa)


def _spiral(rng, mag, f, x0, y0):
    hlr, pa = _size(rng, 3.0, mag, 2.0, 4.5), rng.uniform(0, 180)
    cos_i = rng.uniform(math.cos(math.radians(55)), 1.0)
    q = math.sqrt(cos_i ** 2 * (1 - 0.15 ** 2) + 0.15 ** 2)  # thick-disk projection
    bt, f_arm = rng.uniform(0.05, 0.3), rng.uniform(0.5, 0.75)
    bulge = _sersic(_n(rng.uniform(1.5, 3.5)), max(0.4, rng.uniform(0.15, 0.3) * hlr),
                    rng.uniform(0.75, 1.0), pa, x0, y0, _fluxes(rng, f * bt, RED))
    disk = _sersic(1.0, hlr, q, pa, x0, y0, _fluxes(rng, f * (1 - bt) * (1 - f_arm), DISK))
    arms = {"kind": "arms", "hlr": hlr, "q": q, "pa_deg": pa, "x": x0, "y": y0,
            "m": int(rng.choice([2, 2, 2, 3, 4])), "pitch_deg": rng.uniform(12, 28),
            "chirality": int(rng.choice([-1, 1])), "phase": rng.uniform(0, 2 * math.pi),
            "width": rng.uniform(0.06, 0.11) * hlr, "r_start": rng.uniform(0.3, 0.5) * hlr,
            "r_end": rng.uniform(2.0, 3.0) * hlr, "clump_dex": rng.uniform(0.1, 0.25),
            "n_knots": int(rng.integers(6, 20)), "knot_frac": rng.uniform(0.15, 0.3),
            "knot_sigma": rng.uniform(0.12, 0.25),
            "flux": _fluxes(rng, f * (1 - bt) * f_arm, YOUNG)}
    return [bulge, disk, arms], _core(hlr, 1.0, q, pa)


def _edge_on(rng, mag, f, x0, y0):
    hlr, pa = _size(rng, 2.8, mag, 1.8, 4.5), rng.uniform(0, 180)
    incl, h = rng.uniform(82, 90), rng.uniform(0.07, 0.13)
    bt = rng.uniform(0.05, 0.3)
    bulge = _sersic(_n(rng.uniform(1.5, 3.0)), max(0.4, 0.25 * hlr), rng.uniform(0.6, 0.9),
                    pa, x0, y0, _fluxes(rng, f * bt, RED))
    disk = {"kind": "inclined_exp", "hlr": hlr, "incl_deg": incl, "h_over_r": h,
            "pa_deg": pa, "x": x0, "y": y0, "flux": _fluxes(rng, f * (1 - bt), DUSTY)}
    q_app = math.hypot(math.cos(math.radians(incl)), h)
    return [bulge, disk], _core(hlr, 1.0, q_app, pa)


def _merger(rng, mag, f, x0, y0):
    ratio, tail_frac = rng.uniform(0.3, 1.0), rng.uniform(0.15, 0.3)
    f1 = f * (1 - tail_frac) / (1 + ratio)
    hlr1 = _size(rng, 2.0, mag, 0.8, 3.5)
    hlr2 = float(np.clip(hlr1 * math.sqrt(ratio) * 10 ** (0.1 * rng.standard_normal()), 0.6, 3.5))
    sep = min(6.0, rng.uniform(0.6, 1.3) * (hlr1 + hlr2))  # overlapping, both in stamp
    phi = rng.uniform(0, 2 * math.pi)
    d1, d2 = -sep * ratio / (1 + ratio), sep / (1 + ratio)  # flux barycentre at centre
    gals = []
    for hlr, d, flux in ((hlr1, d1, f1), (hlr2, d2, f1 * ratio)):
        pop = RED if rng.random() < 0.5 else DISK
        n = _n(rng.uniform(1.0, 4.0))
        gals.append(_sersic(n, hlr, rng.uniform(0.5, 1.0), rng.uniform(0, 180),
                            x0 + d * math.cos(phi), y0 + d * math.sin(phi), _fluxes(rng, flux, pop)))
    sense = rng.choice([-1.0, 1.0])  # both tails wind the same way: one orbital sense
    n_tails = 1 if rng.random() < 0.35 else 2
    tails = []
    for k in range(n_tails):
        g, away = gals[k], math.degrees(phi) + (180.0 if k == 0 else 0.0)
        tails.append({"kind": "tail", "x": g["x"], "y": g["y"], "r_start": 0.7 * g["hlr"],
                      "r_end": min(8.0, rng.uniform(2.5, 4.5) * g["hlr"]),
                      "angle_deg": away + rng.uniform(-50, 50),
                      "sweep_deg": sense * rng.uniform(60, 150), "width": rng.uniform(0.3, 0.6),
                      "flux": _fluxes(rng, f * tail_frac / n_tails, TAIL)})
    g0 = gals[0]
    return gals + tails, _core(g0["hlr"], g0["n"], g0["q"], g0["pa_deg"])


_BUILDERS = {ELLIPTICAL: _elliptical, SPIRAL: _spiral, EDGE_ON: _edge_on, MERGER: _merger}


# ------------------------------------------------------------------ rarities
def _lensed(rng, comps, core, flux_r, x0, y0) -> tuple[list[dict], dict]:
    """Blue source behind the elliptical: small offset -> arcs; ~0 offset -> Einstein ring.

    Lenses are compact massive ellipticals: the deflector's half-light radius is capped
    at 0.45 theta_E so the arcs sit outside most of its light, as in SLACS-like lenses.
    """
    theta_e = rng.uniform(2.0, 3.5)  # arcsec; 5-9 SDSS pixels, 8-13 DES pixels
    hlr = min(core["hlr_arcsec"], 0.45 * theta_e)
    comps = [dict(c, hlr=hlr) for c in comps]
    return comps + [_lensed_source(rng, theta_e, flux_r, x0, y0)], dict(core, hlr_arcsec=hlr)


def _lensed_source(rng, theta_e, flux_r, x0, y0) -> dict:
    beta, ang = theta_e * rng.uniform(0.1, 0.45), rng.uniform(0, 2 * math.pi)
    gamma, g_ang = rng.uniform(0, 0.08), rng.uniform(0, math.pi)
    return {"kind": "lensed_source", "x": x0, "y": y0, "theta_e": theta_e,
            "src_x": beta * math.cos(ang), "src_y": beta * math.sin(ang),
            "src_hlr": rng.uniform(0.3, 0.7), "src_q": rng.uniform(0.5, 1.0),
            "src_pa_deg": rng.uniform(0, 180),
            "shear": [gamma * math.cos(2 * g_ang), gamma * math.sin(2 * g_ang)],
            "flux": _fluxes(rng, flux_r * rng.uniform(0.5, 1.0), ARC)}  # lensed (image) flux


def _ring_galaxy(rng, core, f, x0, y0) -> list[dict]:
    """Collisional ring (Cartwheel-like): off-centre red nucleus, blue knotty ring."""
    radius = rng.uniform(2.5, 4.0)  # arcsec: >~2 SDSS PSF FWHM, so the hole is resolved
    q, pa = 1 - core["ellipticity"], core["pa_deg"]
    f_nuc, f_ring = rng.uniform(0.1, 0.25), rng.uniform(0.55, 0.75)
    off, ang = rng.uniform(0, 0.25) * radius, rng.uniform(0, 2 * math.pi)
    nucleus = _sersic(_n(rng.uniform(2, 4)), rng.uniform(0.4, 0.8), rng.uniform(0.7, 1.0), pa,
                      x0 + off * math.cos(ang), y0 + off * math.sin(ang), _fluxes(rng, f * f_nuc, RED))
    ring = {"kind": "ring", "radius": radius, "q": q, "pa_deg": pa, "x": x0, "y": y0,
            "width": rng.uniform(0.2, 0.35), "clump_dex": rng.uniform(0.15, 0.3),
            "flux": _fluxes(rng, f * f_ring, YOUNG)}
    disk = _sersic(1.0, 0.9 * radius, q, pa, x0, y0, _fluxes(rng, f * (1 - f_nuc - f_ring), DISK))
    return [nucleus, ring, disk]


def _trail(rng) -> dict:
    """Often one band only: the satellite crossed during one filter's exposure."""
    if rng.random() < 0.7:
        weights = [0.0, 0.0, 0.0]
        weights[int(rng.integers(3))] = 1.0
    else:
        weights = rng.uniform(0.5, 1.0, 3).tolist()
    return {"kind": "satellite_trail", "angle_deg": rng.uniform(0, 180),
            "offset": rng.uniform(-0.6, 0.6),  # perpendicular offset, fraction of half-stamp
            "density": rng.uniform(3.0, 10.0),  # nanomaggies per arcsec of track
            "band_weights": weights}


def _cosmic_ray(rng) -> dict:
    # amplitude in units of the survey's sky sigma: deposits are detector electrons
    return {"kind": "cosmic_ray", "n_hits": int(rng.integers(1, 6)),
            "amp_sigma": rng.uniform(40, 200)}


def _saturated_star(rng) -> dict:
    r_off, ang = rng.uniform(3.5, 7.0), rng.uniform(0, 2 * math.pi)  # arcsec: in both stamps
    g_r = rng.uniform(0.3, 1.2)
    f_r = 10 ** ((22.5 - rng.uniform(10.5, 12.5)) / 2.5)
    return {"kind": "saturated_star", "x": r_off * math.cos(ang), "y": r_off * math.sin(ang),
            "flux": [f_r * 10 ** (-0.4 * g_r), f_r, f_r * 10 ** (0.4 * (0.1 + 0.4 * g_r))],
            "spike_strength": rng.uniform(0.01, 0.03), "bleed_fraction": rng.uniform(0.05, 0.15)}


_ARTIFACTS = {"satellite_trail": _trail, "cosmic_ray": _cosmic_ray,
              "saturated_star": _saturated_star}
