"""Reader: FITS cutouts, one multi-extension file per object or one file per band.

    folder/
      catalogue.csv                 id[,ra,dec,...]   (or --catalog table.fits; optional)
      <id>.fits                     one image HDU per band (EXTNAME/FILTER = band), or a (C,H,W) cube
    or
      <id>_<band>.fits              one file per band, e.g. J1234_g.fits, J1234_r.fits

The layout is detected (file names ending in _<band> for two or more bands mean
one file per band; ``image_pattern`` "{id}_{band}.fits" forces it).  Bands come
from ``options.bands``, else the HDU names or file names, ordered blue to red.
RA/Dec come from the catalogue or, if it has none, from the cutout's WCS at the
image centre.  Pixel values are kept as they are (image kind "flux").
"""
from __future__ import annotations

import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from webapp.catalog.services.ingest_folder import _folder, _rel, read_catalogue
from webapp.catalog.services.ingest_pixels import (IngestError, check_pixel_budget, finite_or_fix,
                                                   resize_bands)
from webapp.catalog.services.ingest_tables import CatalogRow, TableError
from webapp.catalog.services.ingest_types import Candidate, IngestOptions, Plan, resolve_inside

FITS_SUFFIXES = (".fits.gz", ".fits", ".fit", ".fts")
BAND_ORDER = "ugrizyYJHK"          # blue to red, for band names found in file names
ZERO_POINT_KEYS = ("MAGZERO", "MAGZP", "ZP", "ZEROPT", "PHOTZP")
SEEING_KEYS = ("PSF_FWHM", "SEEING", "FWHM")  # arcsec
PROBE_FILES = 20                   # files tried to learn bands and WCS when the first ones are broken
_PER_BAND = re.compile(r"^(?P<id>.+)_(?P<band>[A-Za-z0-9]{1,3})$")


def plan_fits(path: Path, options: IngestOptions) -> Plan:
    root = _folder(path)
    files = {fits_stem(p): p for p in sorted(root.rglob("*")) if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES)}
    catalogue = resolve_inside(root, options.catalog) if options.catalog else _csv_catalogue(root)
    if catalogue is not None:
        files.pop(fits_stem(catalogue), None)  # a FITS catalogue table is not a cutout
    per_band = _per_band_layout(files, options)
    plan = Plan(bands=list(options.bands), image_kind="flux")
    if per_band:
        plan.bands = plan.bands or per_band
    rows = read_catalogue(catalogue, options, plan.errors) if catalogue else _rows_from_files(files, per_band, root)
    _learn_from_files(plan, list(files.values())[:PROBE_FILES], options, single_band=bool(per_band))
    for row in rows:
        if per_band:
            paths = {b: _band_file(root, files, options, row.source_id, b) for b in plan.bands}
            where = _rel(next(iter(p for p in paths.values() if p), root / row.source_id), root)
            load = partial(_load_per_band, paths, options, row.source_id)
        else:
            path = _mef_file(root, files, options, row.source_id)
            where = _rel(path, root) if path else row.where
            load = partial(_load_mef, path, plan.bands, options, row.source_id)
        plan.candidates.append(Candidate(row.source_id, where, load, row.ra, row.dec, row.metadata,
                                         origin=row.where))
    return plan


def fits_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return Path(path).stem


# ----------------------------------------------------------------- layout and bands

def _per_band_layout(files: dict, options: IngestOptions) -> list[str]:
    """Band names when files are one per band, else [] (multi-extension files)."""
    if options.image_pattern and "{band}" not in options.image_pattern:
        return []
    found: dict[str, set] = {}
    for stem in files:
        match = _PER_BAND.match(stem)
        if match:
            found.setdefault(match["band"], set()).add(match["id"])
    if options.bands and all(b in found for b in options.bands):
        return list(options.bands)
    if "{band}" in options.image_pattern or (len(found) >= 2 and sum(map(len, found.values())) * 2 >= len(files)):
        return sorted(found, key=lambda b: (BAND_ORDER.find(b) if b in BAND_ORDER else 99, b))
    return []


def _rows_from_files(files: dict, per_band: list[str], root: Path) -> list[CatalogRow]:
    if not per_band:
        return [CatalogRow(stem, _rel(p, root), None, None, {}) for stem, p in files.items()]
    ids = sorted({m["id"] for m in map(_PER_BAND.match, files) if m})
    return [CatalogRow(i, i, None, None, {}) for i in ids]


def _learn_from_files(plan: Plan, paths: list[Path], options: IngestOptions, single_band: bool = False) -> None:
    """Bands (multi-extension layout), pixel scale, zero points and seeing from the first readable file."""
    for path in paths:
        try:
            with open_fits(path) as hdul:
                hdus = image_hdus(hdul, options)
                if not single_band and not plan.bands:
                    plan.bands = [name for name, _ in hdus] if len(hdus) > 1 else \
                        [f"b{i}" for i in range(hdus[0][1].header.get("NAXIS3", 1))]
                header = hdus[0][1].header
                plan.input_side = min(header["NAXIS1"], header["NAXIS2"])
                _header_facts(plan, hdus)
                return
        except IngestError:
            continue
    if not plan.bands:
        plan.bands = ["b0"]  # every file is broken; each will be reported when loaded


def _header_facts(plan: Plan, hdus: list) -> None:
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    zero_points = {}
    for name, hdu in hdus:
        for key in ZERO_POINT_KEYS:
            if key in hdu.header:
                zero_points[name] = float(hdu.header[key])
                break
    if zero_points:
        plan.spec["zero_points"] = zero_points
    header = hdus[0][1].header
    for key in SEEING_KEYS:
        if isinstance(header.get(key), (int, float)):
            plan.spec["psf_fwhm_arcsec"] = float(header[key])
            break
    if header.get("BUNIT"):
        plan.notes.append(f"pixel unit (BUNIT): {header['BUNIT']}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
        if wcs.has_celestial:
            plan.spec["pixel_scale_arcsec"] = float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600)
    except Exception:  # a broken WCS only costs the pixel scale
        pass


# ----------------------------------------------------------------- reading files

def open_fits(path: Path):
    """fits.open with truncation and damage turned into IngestError."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*truncated.*")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        return hdul
    except FileNotFoundError:
        raise IngestError("file not found") from None
    except Exception as exc:  # astropy raises OSError, TypeError, ValueError, warnings-as-errors...
        raise IngestError(f"corrupt or truncated FITS ({exc.__class__.__name__}: {exc})") from None


def image_hdus(hdul, options: IngestOptions) -> list[tuple[str, object]]:
    """(band name, HDU) of every 2-D/3-D image HDU; sizes are checked from headers before reading."""
    out = []
    for i, hdu in enumerate(hdul):
        try:
            header = hdu.header
            naxis = header.get("NAXIS", 0)
            is_image = getattr(hdu, "is_image", False)
            dims = tuple(int(header.get(f"NAXIS{k}", 0)) for k in range(1, naxis + 1)) if naxis in (2, 3) else ()
            # EXTNAME as written (astropy's hdu.name is upper-cased: "g" and "G" are different bands).
            name = str(header.get("FILTER") or header.get("BAND") or header.get("EXTNAME") or f"b{i}")
        except Exception as exc:  # astropy parses damaged cards lazily (VerifyError, ValueError...)
            raise IngestError(f"corrupt FITS header in HDU {i} ({exc.__class__.__name__}: {exc})") from None
        if not is_image or naxis not in (2, 3):
            continue
        check_pixel_budget(dims, options.max_pixels)
        out.append((name.strip(), hdu))
    if not out:
        raise IngestError("no 2-D image HDU")
    return out


def _data(hdu) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*truncated.*")
            data = hdu.data
    except Exception as exc:
        raise IngestError(f"corrupt or truncated FITS data ({exc.__class__.__name__}: {exc})") from None
    if data is None:
        raise IngestError("image HDU without data")
    return np.asarray(data, dtype=np.float32)


class BandMismatch(IngestError):
    """The image HDUs do not fit the expected bands.  ``kind`` says how and ``found`` what the file
    holds: "cube" (its number of planes), "hdus" (the HDU count) or "shapes" (the planes' shapes)."""

    def __init__(self, message: str, kind: str, found):
        super().__init__(message)
        self.kind, self.found = kind, found


def stack_bands(hdus: list, bands: list[str], read=None) -> np.ndarray:
    """(C, H, W) float32 in the order of ``bands`` from image_hdus()' (name, HDU) pairs: a 3-D cube
    as it is, else one 2-D HDU per band, by HDU name (FILTER/BAND/EXTNAME, any case) when every band
    is named, else by order.  ``read`` turns an HDU into an array (default: this module's reader).
    Raises BandMismatch when the count or the shapes do not fit."""
    read = read or _data
    if len(hdus) == 1 and hdus[0][1].header.get("NAXIS") == 3:
        cube = read(hdus[0][1])
        if cube.shape[0] != len(bands):
            raise BandMismatch(f"cube has {cube.shape[0]} bands, expected {len(bands)} ({', '.join(bands)})",
                               "cube", cube.shape[0])
        return cube
    by_name = {name.lower(): hdu for name, hdu in hdus}
    if all(b.lower() in by_name for b in bands):
        chosen = [by_name[b.lower()] for b in bands]
    elif len(hdus) == len(bands):
        chosen = [hdu for _, hdu in hdus]
    else:
        raise BandMismatch(f"{len(hdus)} image HDUs ({', '.join(n for n, _ in hdus)}), "
                           f"expected bands {', '.join(bands)}", "hdus", len(hdus))
    planes = [read(h) for h in chosen]
    if len({p.shape for p in planes}) != 1 or planes[0].ndim != 2:
        shapes = [p.shape for p in planes]
        raise BandMismatch(f"band shapes differ or are not 2-D: {shapes}", "shapes", shapes)
    return np.stack(planes)


def _centre_radec(header) -> dict:
    """RA/Dec (degrees, ICRS) of the image centre from the WCS; {} without a celestial WCS."""
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
            if not wcs.has_celestial:
                return {}
            sky = wcs.celestial.pixel_to_world((header["NAXIS1"] - 1) / 2, (header["NAXIS2"] - 1) / 2)
            return {"ra": float(sky.icrs.ra.deg) % 360.0, "dec": float(sky.icrs.dec.deg)}
    except Exception:  # no usable WCS: the galaxy simply has no position
        return {}


def _finish(arr: np.ndarray, options: IngestOptions) -> np.ndarray:
    arr = finite_or_fix(arr, options.nan_policy)
    return resize_bands(arr, options.size, options.crop_fraction, conserve_flux=True)


def _load_mef(path: Path | None, bands: list[str], options: IngestOptions, source_id: str):
    if path is None:
        raise IngestError(f"no FITS file for id {source_id}")
    with open_fits(path) as hdul:
        hdus = image_hdus(hdul, options)
        arr = stack_bands(hdus, bands)
        extra = _centre_radec(hdus[0][1].header)
    return _finish(arr, options), extra


def _load_per_band(paths: dict, options: IngestOptions, source_id: str):
    planes, extra = [], {}
    for band, path in paths.items():
        if path is None:
            raise IngestError(f"no FITS file for id {source_id} band {band}")
        with open_fits(path) as hdul:
            (name, hdu), *_ = image_hdus(hdul, options)
            planes.append(_data(hdu))
            extra = extra or _centre_radec(hdu.header)
    if len({p.shape for p in planes}) != 1 or planes[0].ndim != 2:
        raise IngestError(f"band files have different or non-2-D shapes: {[p.shape for p in planes]}")
    return _finish(np.stack(planes), options), extra


def _mef_file(root: Path, files: dict, options: IngestOptions, source_id: str) -> Path | None:
    if options.image_pattern:
        path = (root / options.image_pattern.format(id=source_id)).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None
    return files.get(source_id)


def _band_file(root: Path, files: dict, options: IngestOptions, source_id: str, band: str) -> Path | None:
    if options.image_pattern:
        path = (root / options.image_pattern.format(id=source_id, band=band)).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None
    return files.get(f"{source_id}_{band}")


def _csv_catalogue(root: Path) -> Path | None:
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv"))
    if len(tables) > 1:
        raise TableError(f"{root.name}: several catalogue tables ({', '.join(p.name for p in tables)}); "
                         "choose one with --catalog")
    return tables[0] if tables else None
