"""Sky positions in the catalogue: the HEALPix column, the promoted magnitude, cone search.

``Galaxy.healpix`` is the NESTED HEALPix index of (ra, dec) at order ``HEALPIX_ORDER`` = 12
(nside 4096: 201M cells of 0.86 arcmin on a side, 0.74 arcmin²).  Why 12: at 10⁷ galaxies over
the whole sky that is about one galaxy per 20 cells, so a crossmatch-sized cone (arcseconds)
reads one to four cells, and because NESTED indices of a coarser cell form one contiguous range
at order 12, a large cone is still a handful of ``BETWEEN`` ranges on the (survey, healpix)
index: the cone is covered by cells of a coarser order chosen from the radius, and each cell
becomes one range.  Exact angular distance then filters the candidates.

``Galaxy.mag`` is one generic indexed magnitude column rather than one column per band: surveys
name their magnitudes differently (mag_r, r_mag, rmag, ...) and most pages only need "the"
brightness to sort and cut on.  Ingest promotes the first of ``MAG_KEYS`` present in a galaxy's
metadata (the metadata keeps the value too).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HEALPIX_ORDER = 12
MAG_KEYS = ("mag_r", "r_mag", "rmag", "mag", "mag_g", "g_mag", "gmag", "mag_i", "i_mag")
MAX_RADIUS_DEG = 10.0        # a 10° cone holds ~2% of a full-sky survey
MAX_CANDIDATES = 200_000     # rows read from the index before the exact filter
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ConeError(ValueError):
    """The cone the user asked for is not valid; the message says why."""


def _healpix(order: int):
    from astropy_healpix import HEALPix
    return HEALPix(nside=2 ** order, order="nested")


def healpix_index(ra, dec, order: int = HEALPIX_ORDER) -> np.ndarray:
    """int64 NESTED index per (ra, dec) in degrees; -1 where either is missing (None/NaN)."""
    from astropy import units as u
    ra = np.asarray([np.nan if v is None else v for v in np.atleast_1d(ra)], dtype=np.float64)
    dec = np.asarray([np.nan if v is None else v for v in np.atleast_1d(dec)], dtype=np.float64)
    out = np.full(len(ra), -1, dtype=np.int64)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        out[ok] = _healpix(order).lonlat_to_healpix(ra[ok] % 360.0 * u.deg, dec[ok] * u.deg)
    return out


def promoted_mag(metadata: dict | None) -> float | None:
    """The first finite number among MAG_KEYS in ``metadata``, else None."""
    for key in MAG_KEYS:
        value = (metadata or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


@dataclass(frozen=True)
class Cone:
    ra: float        # degrees, ICRS
    dec: float
    radius: float    # degrees


def parse_cone(ra, dec, radius) -> Cone:
    """A Cone from user input (strings or numbers), or ConeError saying what is wrong."""
    values = {}
    for name, raw in (("ra", ra), ("dec", dec), ("radius", radius)):
        if raw is None or str(raw).strip() == "":
            raise ConeError(f"give {name} in degrees (cone search needs ra, dec and radius)")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConeError(f"{name}={raw!r} is not a number (degrees)") from None
        if not math.isfinite(value):
            raise ConeError(f"{name}={raw!r} is not a finite number")
        values[name] = value
    if not 0.0 <= values["ra"] <= 360.0:
        raise ConeError(f"ra={values['ra']} must lie in [0, 360] degrees")
    if not -90.0 <= values["dec"] <= 90.0:
        raise ConeError(f"dec={values['dec']} must lie in [-90, 90] degrees")
    if not 0.0 < values["radius"] <= MAX_RADIUS_DEG:
        raise ConeError(f"radius={values['radius']} must be above 0 and at most {MAX_RADIUS_DEG} degrees")
    return Cone(values["ra"] % 360.0, values["dec"], values["radius"])


def angular_distance(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (haversine, exact near 0 and across RA = 0/360)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def cover_order(radius: float) -> int:
    """The finest order (<= HEALPIX_ORDER) whose cells are still at least ``radius`` wide."""
    from astropy_healpix import nside_to_pixel_resolution
    from astropy import units as u
    order = 0
    while order < HEALPIX_ORDER and nside_to_pixel_resolution(2 ** (order + 1)).to_value(u.deg) >= radius:
        order += 1
    return order


def cone_ranges(cone: Cone) -> list[tuple[int, int]]:
    """Inclusive (lo, hi) ranges of order-HEALPIX_ORDER NESTED indices that cover ``cone``.

    Cells of a coarse order are found with astropy_healpix's cone search on a radius padded
    by one cell (so every cell that touches the cone is in, whatever the library's test),
    then each coarse cell becomes the contiguous range of its order-12 children; adjacent
    ranges are merged.
    """
    from astropy import units as u
    from astropy_healpix import nside_to_pixel_resolution
    order = cover_order(cone.radius)
    hp = _healpix(order)
    pad = nside_to_pixel_resolution(2 ** order).to_value(u.deg)
    radius = min(cone.radius + pad, 180.0)
    cells = np.unique(hp.cone_search_lonlat(cone.ra * u.deg, cone.dec * u.deg, radius=radius * u.deg))
    shift = 2 * (HEALPIX_ORDER - order)
    ranges: list[tuple[int, int]] = []
    for cell in cells.tolist():
        lo, hi = cell << shift, ((cell + 1) << shift) - 1
        if ranges and ranges[-1][1] + 1 == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def cone_search(survey, cone: Cone, limit: int = DEFAULT_LIMIT, queryset=None):
    """(galaxies, distances in degrees, n_in_cone): the ``limit`` nearest galaxies of ``survey``
    within ``cone``, nearest first, and how many lie in the cone in all.

    The database does the work, so a request holds ``limit`` rows whatever the cone holds: the
    covering HEALPix ranges (indexed) narrow the candidates, the cosine of the angular distance
    (sin d1 sin d2 + cos d1 cos d2 cos(ra1 - ra2), Django's math functions on PostgreSQL and
    SQLite) decides inside and orders, one COUNT counts.  Distances of the returned rows come
    from the haversine formula (angular_distance).  Raises ConeError when more than
    MAX_CANDIDATES galaxies lie in the covering cells (a bounded count).
    """
    from django.db.models import FloatField, Q, Value
    from django.db.models.functions import Cos, Radians, Sin

    from webapp.catalog.models import Galaxy
    from webapp.catalog.services.browse import GALAXY_FIELDS

    if not 1 <= int(limit) <= MAX_LIMIT:
        raise ConeError(f"limit must be between 1 and {MAX_LIMIT}")
    # The survey goes inside every OR term, so that each term is a range of the (survey, healpix)
    # index on its own: SQLite's planner does not distribute "survey AND (r1 OR r2 ...)" and
    # scanned the whole survey (cone search p95 1.14 s at 10^6, scale_sqlite.json).
    ranges = cone_ranges(cone)
    if not ranges:      # never for a valid cone (its centre's cell covers it); no filter would mean every row
        return [], [], 0
    where = Q()
    for lo, hi in ranges:
        where |= (Q(survey=survey, healpix__gte=lo, healpix__lte=hi) if lo != hi
                  else Q(survey=survey, healpix=lo))
    base = (queryset if queryset is not None else Galaxy.objects.all()).filter(where)
    if base.values("id")[:MAX_CANDIDATES + 1].count() > MAX_CANDIDATES:
        raise ConeError(f"more than {MAX_CANDIDATES:,} galaxies near that cone; use a smaller radius")
    ra0, dec0 = np.radians(cone.ra), np.radians(cone.dec)

    def const(value: float):
        return Value(float(value), output_field=FloatField())
    cos_distance = (Sin(Radians("dec")) * const(np.sin(dec0))
                    + Cos(Radians("dec")) * const(np.cos(dec0)) * Cos(Radians("ra") - const(ra0)))
    annotated = base.annotate(cos_distance=cos_distance)
    cos_radius = float(np.cos(np.radians(cone.radius)))
    # The nearest are fetched with a hair of slack on the cosine (1e-12) and 8 spare rows, so
    # rounding in SQL never drops a galaxy the haversine check below keeps; that check decides.
    nearest = list(annotated.filter(cos_distance__gte=cos_radius - 1e-12).only(*GALAXY_FIELDS)
                   .order_by("-cos_distance", "id")[:int(limit) + 8])
    dist = angular_distance(cone.ra, cone.dec, np.array([g.ra for g in nearest], dtype=np.float64),
                            np.array([g.dec for g in nearest], dtype=np.float64)) if nearest else np.zeros(0)
    keep = [i for i in np.lexsort(([g.pk for g in nearest], dist)) if dist[i] <= cone.radius][:int(limit)]
    n_in_cone = annotated.filter(cos_distance__gte=cos_radius).count()
    return [nearest[i] for i in keep], [float(dist[i]) for i in keep], int(n_in_cone)
