"""Sky positions of an EmbeddingSet's galaxies, and "which galaxy is at this RA/Dec?".

Positions (and each galaxy's survey) come from the catalogue (Galaxy.ra/dec, ICRS
degrees) in the set's row order.  Reading N rows costs ~2 s at 1e6 on SQLite, so the
arrays are kept in memory per process and on disk beside the vectors as
catalogue-<signature>.npz, where the signature covers the set's surveys' row counts and
last-update times: a re-ingest changes it, and the next reader rebuilds the file.
Cross-matching uses astropy's SkyCoord.match_to_catalog_sky, whose k-d tree is kept on
the cached catalogue SkyCoord, so a query costs well under a millisecond after the first.
"""
from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.atomic import save_npz_atomic

from webapp.embeddings.models import EmbeddingSet
from webapp.embeddings.services.vectors import load_embedding_set

POSITIONS_TTL = 600.0       # seconds a cached set of positions is trusted (catalogue edits are rare)
DEFAULT_MAX_SEP_ARCSEC = 60.0  # a match further than this is reported as "no object here"
_DEGREES = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$|^[+-]?\.\d+$")


class SkyError(ValueError):
    """Bad coordinates; the message says what is wrong (HTTP 400)."""


@dataclass
class SkyIndex:
    ra: np.ndarray         # (N,) float64 degrees, NaN where the catalogue has no position
    dec: np.ndarray        # (N,) float64 degrees
    survey: np.ndarray     # (N,) int64 Survey id of each row (-1 when the galaxy is gone)
    rows: np.ndarray       # (M,) int64 rows of the set that have a position
    loaded_at: float
    _coord: object = None  # astropy SkyCoord of those M rows, built on first cross-match

    @property
    def coord(self):
        if self._coord is None and len(self.rows):
            from astropy import units as u
            from astropy.coordinates import SkyCoord
            self._coord = SkyCoord(ra=self.ra[self.rows] * u.deg, dec=self.dec[self.rows] * u.deg, frame="icrs")
        return self._coord


_lock = threading.Lock()
_cache: dict[tuple, SkyIndex] = {}


def catalogue_signature(es: EmbeddingSet) -> str:
    """Changes whenever one of the set's surveys is re-ingested (count or update time)."""
    from webapp.catalog.models import Survey

    parts = [f"{pk}:{n}:{updated.timestamp():.6f}" for pk, n, updated in
             Survey.objects.filter(embedding_sets=es).order_by("pk").values_list("pk", "n_galaxies", "updated_at")]
    return hashlib.sha1("|".join(parts + [es.checksum]).encode()).hexdigest()[:12]


def sky_index(es: EmbeddingSet) -> SkyIndex:
    key = (str(settings.DATA_DIR), es.pk, es.checksum)
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit.loaded_at < POSITIONS_TTL:
        return hit
    with _lock:
        hit = _cache.get(key)
        if hit is None or time.monotonic() - hit.loaded_at >= POSITIONS_TTL:
            hit = _load_or_build(es)
            _cache[key] = hit
    return hit


def forget_cached_positions() -> None:
    with _lock:
        _cache.clear()


def _load_or_build(es: EmbeddingSet) -> SkyIndex:
    path = Path(settings.DATA_DIR) / Path(es.vectors_path).parent / f"catalogue-{catalogue_signature(es)}.npz"
    try:
        with np.load(path) as data:
            ra, dec, survey = data["ra"], data["dec"], data["survey"]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        ra, dec, survey = _from_database(es)
        save_npz_atomic(path, ra=ra, dec=dec, survey=survey)
        for old in path.parent.glob("catalogue-*.npz"):  # superseded signatures
            if old != path:
                old.unlink(missing_ok=True)
    rows = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    return SkyIndex(ra, dec, survey, rows, time.monotonic())


def _from_database(es: EmbeddingSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from webapp.catalog.models import Galaxy

    ids, _, index = load_embedding_set(es)
    ra = np.full(len(ids), np.nan)
    dec = np.full(len(ids), np.nan)
    survey = np.full(len(ids), -1, dtype=np.int64)
    surveys = list(es.surveys.values_list("id", flat=True))
    rows_iter = Galaxy.objects.filter(survey_id__in=surveys).values_list(
        "id", "survey_id", "ra", "dec").iterator(chunk_size=20_000)
    while True:   # 20k catalogue rows per step; id -> row by searchsorted (ml.idindex)
        chunk = list(itertools.islice(rows_iter, 20_000))
        if not chunk:
            break
        gid = np.fromiter((c[0] for c in chunk), np.int64, len(chunk))
        sid = np.fromiter((c[1] for c in chunk), np.int64, len(chunk))
        g_ra = np.fromiter((np.nan if c[2] is None else c[2] for c in chunk), float, len(chunk))
        g_dec = np.fromiter((np.nan if c[3] is None else c[3] for c in chunk), float, len(chunk))
        unplaced = ~(np.isfinite(g_ra) & np.isfinite(g_dec))    # RA or Dec missing: neither is used
        g_ra[unplaced], g_dec[unplaced] = np.nan, np.nan
        row = index.rows(gid)
        keep = row >= 0
        survey[row[keep]] = sid[keep]
        ra[row[keep]], dec[row[keep]] = g_ra[keep], g_dec[keep]
    return ra, dec, survey


def parse_angle(text, what: str) -> float:
    """Degrees from '150.1', or sexagesimal '10:00:24.5' (RA in hours) / '+02:12:00' (Dec)."""
    from astropy import units as u
    from astropy.coordinates import Angle

    text = str(text if text is not None else "").strip()
    if not text:
        raise SkyError(f"{what} is required")
    try:
        if _DEGREES.match(text):
            value = float(text)
        else:
            unit = u.hourangle if what == "RA" else u.deg
            value = Angle(text, unit=unit).deg
    except (ValueError, TypeError, u.UnitsError):
        raise SkyError(f"cannot read {what} {text!r}; give degrees (150.1) or sexagesimal "
                       f"({'10:00:24.5' if what == 'RA' else '+02:12:00'})") from None
    if not np.isfinite(value):
        raise SkyError(f"{what} must be a finite number")
    return float(value)


def check_radec(ra: float, dec: float) -> tuple[float, float]:
    if not 0.0 <= ra < 360.0:
        raise SkyError(f"RA {ra:g} is out of range: it must be in [0, 360) degrees")
    if not -90.0 <= dec <= 90.0:
        raise SkyError(f"Dec {dec:g} is out of range: it must be in [-90, 90] degrees")
    return ra, dec


def nearest_object(es: EmbeddingSet, ra: float, dec: float) -> tuple[int, float] | None:
    """(galaxy id, separation in arcsec) of the set's galaxy closest to (ra, dec), or None."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra, dec = check_radec(ra, dec)
    index = sky_index(es)
    if not len(index.rows):
        return None
    target = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    i, sep, _ = target.match_to_catalog_sky(index.coord)
    ids, _, _ = load_embedding_set(es)
    return int(ids[index.rows[int(np.ravel(i)[0])]]), float(np.ravel(sep.arcsec)[0])
