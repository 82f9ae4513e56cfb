"""Simulate the two demo surveys (ml.simulate) and publish them as catalogue surveys.

One population is drawn once and rendered twice, SDSS-like and DES-like, with
the same object ids and sky positions.  Ground truth (class, rarity, structural
parameters) goes into Galaxy.truth, which the app never reads (only benchmarks/
and tests/ do); people and jobs see the catalogue columns a survey would publish:
photometry plus a simulated Galaxy Zoo-style volunteer catalogue (ml.sim_votes:
gz_vote_* fractions and the gz_label consensus, with volunteer noise).
This module is the one place in the app that writes truth.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ml import sim_votes, simulate
from ml.progress import span
from webapp.catalog.services.surveys import GalaxyRow, publish_survey

SURVEYS = {
    # slug: (display name, spec, public viewer) — simulated skies have no public viewer.
    "sim-sdss": ("Simulated SDSS-like", simulate.SDSS_LIKE),
    "sim-des": ("Simulated DES-like", simulate.DES_LIKE),
}
# Truth fields are hidden; these observables are what a catalogue would list.
OBSERVABLE_KEYS = ("mag_r", "g_r", "r_i")
BATCH = 256


def survey_spec(slug: str, cfg: simulate.SimConfig) -> dict:
    name, spec = SURVEYS[slug]
    return {
        "name": name, "slug": slug, "bands": list(spec.bands), "image_kind": "flux",
        "pixel_scale_arcsec": spec.pixel_scale, "psf_fwhm_arcsec": spec.psf_fwhm,
        "zero_points": getattr(spec, "zero_points", {}) or {},
        "depth": {"sky_noise": [float(x) for x in np.atleast_1d(getattr(spec, "sky_noise", []))]},
        "provenance": f"GalSim simulation, seed {cfg.seed}, n={cfg.n}; config {asdict(cfg)}; survey {asdict(spec)}",
        "description": f"{name}: {spec.pixel_scale}″/px, PSF FWHM {spec.psf_fwhm}″, bands {''.join(spec.bands)}.",
        "is_simulated": True,
    }


def galaxy_rows(population, seed: int) -> list[GalaxyRow]:
    """Catalogue rows: public metadata (photometry + simulated volunteer votes) and hidden truth."""
    records = [obj if isinstance(obj, dict) else asdict(obj) for obj in population]
    votes = sim_votes.simulate_votes([r["class"] for r in records], seed)
    rows = []
    for i, record in enumerate(records):
        observables = {k: round(float(record[k]), 3) for k in OBSERVABLE_KEYS if k in record}
        observables.update({k: column[i].item() if hasattr(column[i], "item") else column[i]
                            for k, column in votes.items()})
        truth = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()
                 if k not in {"ra", "dec", "id"} and not isinstance(v, (dict, list))}
        rows.append(GalaxyRow(source_id=f"SIM{int(record['id']):07d}", ra=float(record["ra"]),
                              dec=float(record["dec"]), metadata=observables, truth=truth))
    return rows


def batches(images: np.ndarray, size: int = BATCH):
    for start in range(0, len(images), size):
        yield images[start:start + size]


def simulate_and_publish(n: int, seed: int, slugs=("sim-sdss", "sim-des"), processes: int = 2,
                         progress=None) -> list:
    cfg = simulate.SimConfig(n=n, seed=seed, processes=processes)
    population = simulate.simulate_population(cfg)
    rows = galaxy_rows(population, seed)
    surveys = []
    for i, slug in enumerate(slugs):
        step = span(progress, i / len(slugs), (i + 1) / len(slugs))
        _, spec = SURVEYS[slug]
        images = simulate.render_survey(population, spec, cfg, progress=span(step, 0.0, 0.85))
        surveys.append(publish_survey(survey_spec(slug, cfg), rows, batches(images),
                                      progress=span(step, 0.85, 1.0)))
    return surveys


def run_simulate_job(job, progress) -> dict:
    n = int(job.params.get("n", 5000))
    seed = int(job.params.get("seed", 0))
    if not 10 <= n <= 2_000_000:
        raise ValueError(f"n={n} is out of range (10 to 2,000,000)")
    surveys = simulate_and_publish(n, seed, progress=progress)
    return {"survey_ids": [s.pk for s in surveys], "survey_slugs": [s.slug for s in surveys], "n": n}
