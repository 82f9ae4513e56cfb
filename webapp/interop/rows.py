"""A table sent back over SAMP (TOPCAT's subset, Aladin's selection) -> galaxies of a map.

The page fetches the VOTable through the hub's URL translator and posts its bytes here;
astropy reads any serialisation (TABLEDATA, BINARY, BINARY2, FITS).  Rows are matched by
galaxy id when the table has a galaxy_id (or id) column, else by position: RA/Dec columns
(found by UCD pos.eq.ra/pos.eq.dec, else by name) cross-matched to the map's catalogue
within MATCH_ARCSEC.
"""
from __future__ import annotations

import io

import numpy as np

from webapp.embeddings.models import EmbeddingSet
from webapp.embeddings.services.sky import sky_index
from webapp.embeddings.services.vectors import load_embedding_set

MATCH_ARCSEC = 2.0
MAX_ROWS = 200_000
ID_NAMES = ("galaxy_id", "ls_id", "id")
RA_NAMES = ("ra", "ra_icrs", "raj2000", "ra_deg", "_raj2000", "alpha")
DEC_NAMES = ("dec", "de", "dec_icrs", "dej2000", "dec_deg", "_dej2000", "delta")


class RowsError(ValueError):
    """A table that cannot be read or has neither ids nor positions (HTTP 400)."""


def read_table(data: bytes):
    from astropy.io.votable import parse
    try:
        votable = parse(io.BytesIO(data), verify="ignore")
        resource_table = votable.get_first_table()
    except Exception as exc:  # astropy raises many kinds for a malformed document
        raise RowsError(f"not a VOTable: {str(exc)[:200]}") from None
    return resource_table


def _column(vtable, names, ucd_prefix: str | None = None):
    fields = vtable.fields
    if ucd_prefix:
        for f in fields:
            ucds = (f.ucd or "").lower().split(";")
            if ucd_prefix in ucds and "meta.main" in ucds:
                return f.ID or f.name, f
        for f in fields:
            if ucd_prefix in (f.ucd or "").lower().split(";"):
                return f.ID or f.name, f
    by_name = {(f.name or "").lower(): f for f in fields}
    for n in names:
        if n in by_name:
            f = by_name[n]
            return f.ID or f.name, f
    return None, None


def galaxies_from_votable(es: EmbeddingSet, data: bytes, radius_arcsec: float = MATCH_ARCSEC) -> dict:
    """{"ids": galaxy ids of `es` in the table (table order, unique), "rows", "matched", "by"}."""
    vtable = read_table(data)
    table = vtable.to_table(use_names_over_ids=True)
    if len(table) > MAX_ROWS:
        raise RowsError(f"the table has {len(table)} rows; at most {MAX_ROWS} become a selection")
    ids_all, _, row_of = load_embedding_set(es)
    _, id_field = _column(vtable, ID_NAMES)
    if id_field is not None:
        values = np.ma.filled(np.ma.asarray(table[id_field.name]), -1)
        found = []
        for v in values:
            try:
                g = int(v)
            except (TypeError, ValueError):
                continue
            if g in row_of:
                found.append(g)
        return _reply(found, len(table), "galaxy_id")
    _, ra_f = _column(vtable, RA_NAMES, "pos.eq.ra")
    _, dec_f = _column(vtable, DEC_NAMES, "pos.eq.dec")
    if ra_f is None or dec_f is None:
        raise RowsError("the table has no galaxy_id column and no RA/Dec columns")
    ra = np.ma.filled(np.ma.asarray(table[ra_f.name], dtype=np.float64), np.nan)
    dec = np.ma.filled(np.ma.asarray(table[dec_f.name], dtype=np.float64), np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    index = sky_index(es)
    if not ok.any() or not len(index.rows):
        return _reply([], len(table), "position")
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    coords = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs")
    nearest, sep, _ = coords.match_to_catalog_sky(index.coord)
    close = sep.arcsec <= radius_arcsec
    rows = index.rows[np.asarray(nearest)[close]]
    return _reply([int(ids_all[r]) for r in rows], len(table), "position")


def _reply(found: list[int], n_rows: int, by: str) -> dict:
    unique = list(dict.fromkeys(found))
    return {"ids": unique, "rows": n_rows, "matched": len(unique), "by": by}
