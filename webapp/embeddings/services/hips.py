"""HiPS imagery for the sky view (Aladin Lite): which HiPS shows a survey, and the catalogue
points drawn over it.

A survey shows imagery when its slug or name names a survey CDS serves as a colour HiPS
(HIPS_BY_SURVEY, first match wins); simulated surveys never do (their sky is made up).  The
browser then probes the HiPS server (a short timeout) before loading Aladin Lite; offline the
sky view stays the bokeh scatter (static/js/sky_imagery.js).
"""
from __future__ import annotations

import re

import numpy as np
from bokeh.palettes import Category10_10, Category20_20, Viridis256

from webapp.embeddings.models import EmbeddingSet, LatentMap
from webapp.embeddings.services import map_data, map_tiles
from webapp.embeddings.services.sky import sky_index
from webapp.embeddings.services.vectors import load_embedding_set

# word in the survey's slug/name -> CDS HiPS id (colour where there is one)
HIPS_BY_SURVEY = [
    ("sdss", "CDS/P/SDSS9/color"),
    ("des", "CDS/P/DES-DR2/ColorIRG"),
    ("decals", "CDS/P/DESI-Legacy-Surveys/DR10/color"),
    ("legacy", "CDS/P/DESI-Legacy-Surveys/DR10/color"),
    ("hsc", "CDS/P/HSC/DR2/wide/color"),
    ("panstarrs", "CDS/P/PanSTARRS/DR1/color-z-zg-g"),
    ("ps1", "CDS/P/PanSTARRS/DR1/color-z-zg-g"),
    ("euclid", "CDS/P/Euclid/Q1/color"),
    ("galaxy-zoo", "CDS/P/SDSS9/color"),
    ("galaxyzoo", "CDS/P/SDSS9/color"),
]
MAX_OVERLAY_POINTS = 20_000  # catalogue sources Aladin Lite draws comfortably
CATEGORICAL = list(Category10_10) + list(Category20_20[1::2])  # as the map (views_map.CATEGORICAL)
MISSING = "#bbbbbb"


def hips_for_survey(survey) -> str | None:
    if survey.is_simulated:
        return None
    words = set(re.split(r"[^a-z0-9]+", f"{survey.slug} {survey.name}".lower()))
    text = f"{survey.slug} {survey.name}".lower()
    for key, hips in HIPS_BY_SURVEY:
        if key in words or ("-" in key and key in text):
            return hips
    return None


def hips_for_set(es: EmbeddingSet) -> str | None:
    for survey in es.surveys.order_by("pk"):
        hips = hips_for_survey(survey)
        if hips:
            return hips
    return None


def overlay(lm: LatentMap, layer_key: str | None, limit: int = MAX_OVERLAY_POINTS) -> dict:
    """{"hips", "fov", "center", "points": [{"id", "ra", "dec", "colour"}]} for Aladin Lite.

    The points are the map's priority sample (the same the map shows first), with a position;
    colours follow the map's colour layer (categorical palette or Viridis 2nd-98th percentile).
    """
    es = lm.embedding_set
    ids, _, _ = load_embedding_set(es)
    sky = sky_index(es)
    found = (map_tiles.rows_in_view_from_tiles(lm, None, limit, 0)   # a tiled map: from its point tiles
             if map_tiles.tiled(lm) and map_tiles.tiles_info(lm) else None)
    rows, _ = found if found is not None else map_data.rows_in_view(lm, None, limit)
    rows = rows[np.isfinite(sky.ra[rows]) & np.isfinite(sky.dec[rows])]
    colours = _colours(es, layer_key, rows)
    points = [{"id": int(ids[r]), "ra": round(float(sky.ra[r]), 7), "dec": round(float(sky.dec[r]), 7),
               "colour": c} for r, c in zip(rows, colours)]
    center = fov = None
    if len(rows):
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        coords = SkyCoord(ra=sky.ra[rows] * u.deg, dec=sky.dec[rows] * u.deg)
        mean = SkyCoord(coords.cartesian.mean(), representation_type="cartesian").spherical
        centre = SkyCoord(ra=mean.lon, dec=mean.lat)
        center = [round(float(centre.ra.deg), 6), round(float(centre.dec.deg), 6)]
        fov = round(float(min(180.0, max(0.05, 2.2 * coords.separation(centre).deg.max()))), 4)
    return {"hips": hips_for_set(es), "center": center, "fov": fov, "layer": layer_key or "", "points": points}


def _colours(es, layer_key: str | None, rows: np.ndarray) -> list[str]:
    if not layer_key:
        return [CATEGORICAL[0]] * len(rows)
    values = map_data.layer_values(es, layer_key)
    codes = values.codes[rows]
    if values.kind == "categorical":
        return [MISSING if not np.isfinite(c) else CATEGORICAL[int(c) % len(CATEGORICAL)] for c in codes]
    span = max(values.high - values.low, 1e-12)
    pos = np.clip((codes - values.low) / span, 0, 1) * (len(Viridis256) - 1)
    return [MISSING if not np.isfinite(p) else Viridis256[int(round(p))] for p in pos]
