"""Two-survey simulator: determinism, population statistics, survey realism, rarities."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from ml import sim_scenes
from ml.imagestore import array_checksum, open_store
from ml.simulate import (DES_LIKE, SDSS_LIKE, SimConfig, render_object, render_survey,
                         simulate_population, simulate_surveys, truth_table)
from ml.vocab import ARTIFACTS, CLASSES, RARITIES

pytestmark = pytest.mark.unit

CFG = SimConfig(n=40, seed=5, processes=1)


@pytest.fixture(scope="module")
def population():
    return simulate_population(CFG)


def _row(cls, rarity="none", i=0, seed=11):
    return sim_scenes.make_object(SimConfig(seed=seed), i, cls, rarity)


def _centred(row):
    """The same object with its light centre exactly on the stamp centre."""
    row = copy.deepcopy(row)
    dx, dy = row["params"]["offset"]
    for comp in row["params"]["components"]:
        comp["x"] -= dx
        comp["y"] -= dy
    return row


def _coords(spec):
    c = (np.arange(spec.stamp_size) - (spec.stamp_size - 1) / 2) * spec.pixel_scale
    return np.meshgrid(c, c, indexing="ij")  # (Y, X) arcsec


# ------------------------------------------------------------------ determinism
def test_population_is_deterministic_by_seed_and_json_serialisable(population):
    assert simulate_population(CFG) == population
    other = simulate_population(dataclasses.replace(CFG, seed=6))
    assert [r["mag_r"] for r in other] != [r["mag_r"] for r in population]
    assert [r["id"] for r in population] == list(range(40))
    json.dumps(population)  # the catalogue goes into database rows / JSON files


def test_render_is_deterministic_and_independent_of_process_count(population):
    rows = population[:16]
    serial = render_survey(rows, SDSS_LIKE, CFG)
    again = render_survey(rows, SDSS_LIKE, dataclasses.replace(CFG, chunk_size=5))
    parallel = render_survey(rows, SDSS_LIKE, dataclasses.replace(CFG, processes=2, chunk_size=3))
    assert serial.shape == (16, 3, 64, 64) and serial.dtype == np.float32
    assert np.isfinite(serial).all()
    np.testing.assert_array_equal(serial, again)
    np.testing.assert_array_equal(serial, parallel)


# ------------------------------------------------------------------ population statistics
def test_class_counts_follow_the_configured_fractions_exactly():
    pop = simulate_population(SimConfig(n=1000, seed=1))
    assert Counter(r["class"] for r in pop) == {"elliptical": 400, "spiral": 350,
                                                 "edge_on": 200, "merger": 50}
    assert set(truth_table(pop)["class"]) <= set(CLASSES)


def test_rarities_are_planted_at_the_configured_rate_on_suitable_hosts():
    pop = simulate_population(SimConfig(n=5000, seed=2))
    counts = Counter(r["rarity"] for r in pop)
    assert set(counts) <= set(RARITIES)
    assert counts == {"none": 4900, "lens": 25, "ring": 25, "satellite_trail": 20,
                      "cosmic_ray": 15, "saturated_star": 15}
    assert {r["class"] for r in pop if r["rarity"] == "lens"} == {"elliptical"}
    assert {r["class"] for r in pop if r["rarity"] == "ring"} == {"spiral"}
    assert len({r["class"] for r in pop if r["rarity"] in ARTIFACTS}) >= 3  # any host


def test_unknown_classes_or_rarities_are_rejected():
    with pytest.raises(ValueError, match="unknown classes"):
        simulate_population(SimConfig(n=10, class_fractions={"spiral": 0.5, "irregular": 0.5}))
    with pytest.raises(ValueError, match="unknown rarity"):
        simulate_population(SimConfig(n=10, rarity_weights={"lens": 1.0, "supernova": 1.0}))


def test_colours_and_sizes_are_class_dependent():
    pop = simulate_population(SimConfig(n=600, seed=3))
    t = truth_table(pop)
    gr = {c: t["g_r"][t["class"] == c].mean() for c in CLASSES}
    assert gr["elliptical"] > gr["spiral"] + 0.2  # red sequence vs blue cloud
    assert 0.7 < gr["elliptical"] < 0.9
    assert (t["mag_r"] >= 13.9).all() and (t["mag_r"] <= 17.6).all()
    ell = t["ellipticity"]
    assert ell[t["class"] == "edge_on"].min() > ell[t["class"] == "elliptical"].max()
    assert (np.abs(t["dec"] - 0.0) <= 1.0).all()  # inside the 2-degree patch


# ------------------------------------------------------------------ two surveys
def test_both_surveys_show_the_same_objects_at_the_same_sky_position(tmp_path):
    cfg = SimConfig(n=10, seed=4, processes=1)
    calls = []
    res = simulate_surveys(cfg, progress=lambda d, t, m: calls.append((d, t)))
    assert set(res.images) == {"sdss_like", "des_like"}
    assert calls[-1] == (20, 20) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    for row in res.catalogue:
        if row["rarity"] != "none":
            continue
        centroids = []
        for spec in (SDSS_LIKE, DES_LIKE):
            img = render_object(row, spec, noise=False)[1]
            yy, xx = _coords(spec)
            centroids.append(((img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()))
        np.testing.assert_allclose(centroids[0], centroids[1], atol=0.15)  # arcsec
    stored = simulate_surveys(cfg, out_dir=tmp_path)  # streamed to stores, same pixels
    for name, arr in res.images.items():
        info = stored.stores[name]
        assert info.shape == arr.shape and info.checksum == array_checksum(arr)
        with open_store(info.path) as store:
            np.testing.assert_array_equal(store.read_many(range(10)), arr)
            assert json.loads(store.attrs["sim_config"])["seed"] == 4


def test_des_like_is_sharper_and_less_noisy_than_sdss_like():
    row = _centred(_row("elliptical", i=3))
    concentration = {}
    for spec in (SDSS_LIKE, DES_LIKE):
        img = render_object(row, spec, noise=False)[1]
        yy, xx = _coords(spec)
        rad = np.hypot(xx, yy)
        concentration[spec.name] = img[rad < 1.0].sum() / img[rad < 4.0].sum()
    assert concentration["des_like"] > 1.2 * concentration["sdss_like"]
    # Measured sky noise matches the spec; per arcsec^2, DES is several times deeper.
    blank = copy.deepcopy(row)
    blank["params"]["components"] = []
    for spec in (SDSS_LIKE, DES_LIKE):
        noise = render_object(blank, spec).std(axis=(1, 2))
        np.testing.assert_allclose(noise, spec.noise_sigma(), rtol=0.1)
    per_area = [s.noise_sigma()[1] / s.pixel_scale for s in (SDSS_LIKE, DES_LIKE)]
    assert per_area[0] > 3 * per_area[1]


# ------------------------------------------------------------------ morphology
def _mirror_asymmetry(img):
    """min over axes of |I - mirror(I)| / |I|: ~0 for any elliptical-symmetric profile."""
    best = np.inf
    for angle in range(0, 180, 3):
        rot = ndimage.rotate(img, angle, reshape=False, order=3)
        best = min(best, np.abs(rot - rot[::-1]).sum() / np.abs(rot).sum())
    return best


def test_spirals_are_chiral_and_mergers_asymmetric_unlike_ellipticals():
    def image(cls, i):
        return render_object(_centred(_row(cls, i=i)), DES_LIKE, noise=False)[1]
    ell = [image("elliptical", i) for i in range(4)]
    spi = [image("spiral", i) for i in range(4)]
    mer = [image("merger", i) for i in range(4)]
    rot180 = lambda im: np.abs(im - np.rot90(im, 2)).sum() / np.abs(im).sum()  # noqa: E731
    assert max(_mirror_asymmetry(im) for im in ell) < 0.04
    assert min(_mirror_asymmetry(im) for im in spi) > 0.06  # arms wind one way
    assert max(rot180(im) for im in ell) < 0.01
    assert min(rot180(im) for im in mer) > 0.15  # an off-centre pair plus tails


def test_edge_on_disks_are_thin():
    for i in range(3):
        img = render_object(_centred(_row("edge_on", i=i)), DES_LIKE, noise=False)[1]
        yy, xx = _coords(DES_LIKE)
        w = img / img.sum()
        cov = [[(w * xx * xx).sum(), (w * xx * yy).sum()], [(w * xx * yy).sum(), (w * yy * yy).sum()]]
        lo, hi = np.linalg.eigvalsh(cov)
        assert math.sqrt(lo / hi) < 0.5  # measured axis ratio through the PSF


# ------------------------------------------------------------------ rarities
def test_lens_adds_a_blue_arc_near_the_einstein_radius():
    row = _centred(_row("elliptical", "lens", i=2))
    arc = next(c for c in row["params"]["components"] if c["kind"] == "lensed_source")
    galaxy_only = copy.deepcopy(row)
    galaxy_only["params"]["components"] = [c for c in row["params"]["components"] if c is not arc
                                           and c["kind"] != "lensed_source"]
    diff = render_object(row, DES_LIKE, noise=False) - render_object(galaxy_only, DES_LIKE, noise=False)
    yy, xx = _coords(DES_LIKE)
    radius = (diff[0] * np.hypot(xx, yy)).sum() / diff[0].sum()
    assert abs(radius - arc["theta_e"]) < 0.35 * arc["theta_e"]
    gal = render_object(galaxy_only, DES_LIKE, noise=False)
    assert diff[0].sum() / diff[1].sum() > 1.3 * gal[0].sum() / gal[1].sum()  # bluer


def test_ring_galaxy_is_brighter_on_the_ring_than_inside_it():
    for i in range(3):
        row = _row("spiral", "ring", i=i)
        ring = next(c for c in row["params"]["components"] if c["kind"] == "ring")
        img = render_object(row, DES_LIKE, noise=False)[0]
        yy, xx = _coords(DES_LIKE)
        pa = math.radians(ring["pa_deg"])
        dx, dy = xx - ring["x"], yy - ring["y"]
        u = dx * math.cos(pa) + dy * math.sin(pa)
        v = (-dx * math.sin(pa) + dy * math.cos(pa)) / ring["q"]
        rad = np.hypot(u, v) / ring["radius"]
        assert img[(rad > 0.9) & (rad < 1.1)].mean() > 1.3 * img[(rad > 0.4) & (rad < 0.6)].mean()


@pytest.mark.parametrize("spec", [SDSS_LIKE, DES_LIKE], ids=lambda s: s.name)
def test_satellite_trail_is_a_bright_line_only_in_its_bands(spec):
    for i in range(4):
        trail = _row("spiral", "satellite_trail", i=i)
        diff = render_object(trail, spec) - render_object(_row("spiral", i=i), spec)
        weights = np.asarray(trail["params"]["artifact"]["band_weights"])
        for b in range(3):
            if weights[b] == 0:
                np.testing.assert_array_equal(diff[b], 0.0)  # same noise, no trail
        b = int(np.argmax(weights))
        assert diff[b].max() > 8 * spec.noise_sigma()[b]
        ys, xs = np.nonzero(diff[b] > 0.5 * diff[b].max())
        lo, hi = np.linalg.eigvalsh(np.cov(np.stack([xs, ys])))
        assert hi > 25 * lo and math.sqrt(hi) > 10  # long and thin: a line across the stamp


def test_cosmic_rays_are_sharp_unconvolved_hits():
    for i in range(4):
        hit = _row("elliptical", "cosmic_ray", i=i)
        diff = render_object(hit, SDSS_LIKE) - render_object(_row("elliptical", i=i), SDSS_LIKE)
        touched = np.argwhere(diff != 0)
        assert 1 <= len(touched) <= 5 * 8  # at most 5 hits of at most 8 pixels, no PSF halo
        in_sigma = diff / SDSS_LIKE.noise_sigma()[:, None, None]
        assert in_sigma.max() > 20
        # Sharp: a hit pixel towers over its neighbours; a PSF-blurred source cannot.
        b, y, x = np.unravel_index(np.argmax(in_sigma), in_sigma.shape)
        ring = [diff[b, y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                if (dy or dx) and 0 <= y + dy < 64 and 0 <= x + dx < 64]
        assert min(ring) < 0.7 * diff[b, y, x]


def test_saturated_star_is_clipped_with_spikes_and_bleeds_along_columns():
    spec = DES_LIKE
    star_row = _row("edge_on", "saturated_star", i=1)
    star = render_object(star_row, spec)
    plain = render_object(_row("edge_on", i=1), spec)
    level = spec.saturation_nmgy
    assert plain.max() < level
    assert np.isclose(star.max(), level)
    flat = np.argwhere(star[1] == np.float32(level))
    assert len(flat) > 10
    assert np.ptp(flat[:, 0]) > np.ptp(flat[:, 1])  # bleed trail runs along columns
    art = star_row["params"]["artifact"]
    diff = render_object(star_row, spec, noise=False)[1] - render_object(_row("edge_on", i=1), spec, noise=False)[1]
    cy, cx = (np.array([art["y"], art["x"]]) / spec.pixel_scale + (spec.stamp_size - 1) / 2)
    ang = math.radians(spec.spike_angle_deg)
    on, off = [], []
    for d in (8, 10, 12):  # pixels from the star, along a spike vs between spikes
        for a, bucket in ((ang, on), (ang + math.pi / 4, off)):
            for s in (1, -1):
                y, x = int(round(cy + s * d * math.sin(a))), int(round(cx + s * d * math.cos(a)))
                if 0 <= x < 64 and 0 <= y < 64:
                    bucket.append(diff[y, x])
    assert np.median(on) > 3 * np.median(off)
