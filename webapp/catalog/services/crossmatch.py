"""The same object seen by other surveys: by shared catalogue id, else by sky position.

The two simulated surveys share object ids and positions, so a galaxy page can
show the SDSS-like and DES-like views side by side; real surveys match by RA/Dec.
"""
from __future__ import annotations

import math

from astropy import units as u
from astropy.coordinates import SkyCoord

from webapp.catalog.models import Galaxy
from webapp.catalog.services import browse, static_thumbs

MATCH_RADIUS_ARCSEC = 1.0


def counterparts(galaxy: Galaxy, radius_arcsec: float = MATCH_RADIUS_ARCSEC) -> list[dict]:
    """One dict per other survey: {"galaxy", "survey", "how", "thumb"}; nearest match wins."""
    found: dict[int, dict] = {}
    for other in (Galaxy.objects.filter(source_id=galaxy.source_id).exclude(survey_id=galaxy.survey_id)
                  .select_related("survey").only(*browse.GALAXY_FIELDS, "survey__name", "survey__slug",
                                                 *static_thumbs.SURVEY_ONLY)):
        found[other.survey_id] = {"galaxy": other, "survey": other.survey, "how": "same id"}
    if galaxy.ra is not None and galaxy.dec is not None:
        box = radius_arcsec / 3600.0
        ra_box = box / max(math.cos(math.radians(galaxy.dec)), 1e-3)
        candidates = Galaxy.objects.exclude(survey_id__in=[galaxy.survey_id, *found]).filter(
            dec__range=(galaxy.dec - box, galaxy.dec + box), ra__isnull=False)
        if ra_box < galaxy.ra < 360 - ra_box:  # away from the RA wrap, narrow the box in RA too
            candidates = candidates.filter(ra__range=(galaxy.ra - ra_box, galaxy.ra + ra_box))
        nearby = (candidates
                  .select_related("survey").only(*browse.GALAXY_FIELDS, "survey__name", "survey__slug",
                                                 *static_thumbs.SURVEY_ONLY)[:200])
        here = SkyCoord(galaxy.ra * u.deg, galaxy.dec * u.deg)
        for other in nearby:
            sep = here.separation(SkyCoord(other.ra * u.deg, other.dec * u.deg)).arcsec
            best = found.get(other.survey_id)
            if sep <= radius_arcsec and (best is None or sep < best["sep"]):
                found[other.survey_id] = {"galaxy": other, "survey": other.survey, "how": f"{sep:.2f}″ away",
                                          "sep": sep}
    items = sorted(found.values(), key=lambda c: c["survey"].name)
    for item in items:
        item["thumb"] = browse.thumb_url(item["galaxy"], item["survey"], size=96)
    return items


def counterparts_panel(request, galaxy) -> dict | None:
    items = counterparts(galaxy)
    if not items:
        return None
    return {"template": "catalog/_counterparts.html", "context": {"items": items, "radius": MATCH_RADIUS_ARCSEC}}
