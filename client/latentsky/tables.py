"""Rows and columns from the JSON API as astropy Tables, with units where the API states them."""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np
from astropy import units as u
from astropy.table import Column, MaskedColumn, Table

# Units the API documents for column names (degrees ICRS, arcseconds, seconds).
UNITS = {"ra": u.deg, "dec": u.deg, "pixel_scale_arcsec": u.arcsec / u.pix, "psf_fwhm_arcsec": u.arcsec,
         "separation_arcsec": u.arcsec, "field_arcsec": u.arcsec, "seconds": u.s, "duration_seconds": u.s}

FORMATS = {"ra": ".6f", "dec": ".6f"}   # display only: 1e-6 deg is 3.6 mas


def unit_for(name: str):
    if name in UNITS:
        return UNITS[name]
    if name.endswith("_arcsec"):
        return u.arcsec
    return None


def _kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "empty"
    if all(isinstance(v, bool) or isinstance(v, np.bool_) for v in present):
        return "bool"
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "float"
    if all(isinstance(v, str) for v in present):
        return "str"
    return "object"


def make_column(name: str, values: list, unit=None):
    """One column: ints, floats (None -> NaN), bools, strings or objects; None masked where needed."""
    kind = _kind(values)
    mask = np.array([v is None for v in values], dtype=bool)
    unit = unit if unit is not None else unit_for(name)
    if kind == "float" or (kind == "int" and mask.any() and name in UNITS):
        data = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        return Column(data, name=name, unit=unit, format=FORMATS.get(name))
    if kind in ("int", "bool", "str"):
        fill = {"int": 0, "bool": False, "str": ""}[kind]
        data = np.array([fill if v is None else v for v in values],
                        dtype={"int": np.int64, "bool": bool, "str": str}[kind])
        if mask.any():
            return MaskedColumn(data, name=name, mask=mask, unit=unit)
        return Column(data, name=name, unit=unit)
    if kind == "empty":
        return MaskedColumn(np.zeros(len(values)), name=name, mask=np.ones(len(values), bool), unit=unit)
    data = np.empty(len(values), dtype=object)
    data[:] = values
    return Column(data, name=name)


def table_from_rows(rows: Iterable[Mapping], columns: list[str] | None = None, meta: dict | None = None,
                    flatten: str | None = None) -> Table:
    """A Table from a list of dicts (missing keys masked).  ``flatten``: a key whose dict value
    becomes one column per key (e.g. a galaxy's ``metadata``)."""
    rows = [dict(r) for r in rows]
    if flatten:
        for r in rows:
            inner = r.pop(flatten, None) or {}
            for k, v in inner.items():
                r.setdefault(k if k not in r else f"{flatten}_{k}", v)
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    table = Table(meta=meta or {})
    for name in columns:
        table[name] = make_column(name, [r.get(name) for r in rows])
    return table


def table_from_columns(cols: Mapping[str, list], meta: dict | None = None) -> Table:
    """A Table from {name: list of values} (the API's columnar replies)."""
    table = Table(meta=meta or {})
    for name, values in cols.items():
        table[name] = make_column(name, list(values))
    return table
