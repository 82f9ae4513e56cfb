"""Shared types of the ingestion readers: options, candidates and a reader's plan.

A reader (ingest_folder, ingest_fits, ingest_hdf5, ingest_galaxyzoo) turns an
input path into a Plan: the catalogue objects it found (Candidates, each with a
``load()`` that decodes its cutout later), the problems it met, and the survey
facts it learnt (bands, image kind, pixel scale).  ingest.py then de-duplicates,
limits, decodes and publishes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from webapp.catalog.services.ingest_pixels import DEFAULT_MAX_PIXELS, NAN_POLICIES, IngestError

MAX_SIZE = 512  # px; cutouts are stored as float32, 3x512x512 is already 3 MB each


@dataclass
class IngestOptions:
    survey: str = ""                    # survey name; re-using a name updates that survey
    catalog: str = ""                   # catalogue table (CSV/TSV/FITS); relative = inside the input path
    id_column: str = ""                 # "" = auto-detect: source_id, objid, dr7objid, id, galaxyid, iauname, name
    ra_column: str = ""                 # "" = auto-detect ra/ra_deg/raj2000 (optional column), degrees
    dec_column: str = ""                # "" = auto-detect dec/dec_deg/dej2000 (optional column), degrees
    image_pattern: str = ""             # e.g. "images/{id}.jpeg"; "" = any file whose name stem is the id
    size: int = 64                      # stored cutout side, pixels
    crop_fraction: float = 1.0          # centre fraction of the frame kept before resizing (GZ1 preset: 0.4)
    limit: int = 0                      # ingest at most this many catalogue rows (0 = all)
    bands: list = field(default_factory=list)  # FITS/HDF5 band names; [] = from headers or file names
    label_column: str = ""              # integer class column -> metadata "<label_key>_class" / "_label"
    label_key: str = "label"            # prefix of those metadata keys ("gz1" -> gz1_class, gz1_label)
    nan_policy: str = "skip"            # NaN/inf pixels: "skip" the object or "zero" the pixels
    images_dataset: str = "images"      # HDF5: (N,H,W,C) uint8 as in Galaxy10, or (N,C,H,W) float
    labels_dataset: str = "ans"         # HDF5: integer labels (used when present)
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images declaring more pixels (decompression-bomb guard)
    workers: int = 1                    # threads decoding JPEG/PNG (PIL releases the GIL while decoding)
    description: str = ""               # shown on the survey card
    provenance: str = ""                # "" = generated from the format, path and options
    pixel_scale_arcsec: float | None = None  # of the INPUT images; stored value accounts for crop and resize
    psf_fwhm_arcsec: float | None = None     # typical seeing FWHM, arcsec
    viewer_url_template: str = ""       # e.g. "https://…?ra={ra}&dec={dec}"
    preset: str = ""                    # name of the preset these options came from (informational)

    def validate(self) -> "IngestOptions":
        if not self.survey.strip():
            raise IngestError("a survey name is required (--survey)")
        if not 8 <= int(self.size) <= MAX_SIZE:
            raise IngestError(f"size {self.size} must be between 8 and {MAX_SIZE} pixels")
        if not 0 < float(self.crop_fraction) <= 1:
            raise IngestError(f"crop fraction {self.crop_fraction} must be in (0, 1]")
        if int(self.limit) < 0:
            raise IngestError("limit must be >= 0 (0 = no limit)")
        if self.nan_policy not in NAN_POLICIES:
            raise IngestError(f"nan_policy {self.nan_policy!r} is not one of {NAN_POLICIES}")
        if not 1 <= int(self.workers) <= 32:
            raise IngestError("workers must be between 1 and 32")
        if self.image_pattern and "{id}" not in self.image_pattern:
            raise IngestError(f"image pattern {self.image_pattern!r} must contain {{id}}")
        return self

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


Loaded = tuple[np.ndarray, dict]  # (C, size, size) float32 and extras, e.g. {"ra": .., "dec": ..} from WCS


@dataclass
class Candidate:
    """One catalogue object a reader found; its pixels are decoded later by ``load()``."""
    source_id: str
    where: str                          # file (and line) named in error messages
    load: Callable[[], Loaded]          # raises IngestError (or OSError) on a bad image
    ra: float | None = None             # degrees, ICRS
    dec: float | None = None
    metadata: dict = field(default_factory=dict)
    origin: str = ""                    # catalogue file and line it came from ("" = same as where)


@dataclass
class Plan:
    """What a reader found in the input."""
    bands: list[str]                    # stored band order, e.g. ["R", "G", "B"] or ["g", "r", "i"]
    image_kind: str                     # "rgb" (values in [0, 1]) or "flux"
    candidates: list[Candidate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # "file: reason"
    notes: list[str] = field(default_factory=list)    # informational, not problems
    spec: dict = field(default_factory=dict)          # survey facts learnt (pixel scale, zero points...)
    input_side: int = 0                 # shorter side of the first input image, px (for the pixel scale)
    threads_ok: bool = False            # load() may run in worker threads (independent files)
    cleanup: list = field(default_factory=list)       # callables run when ingestion ends (close files)


def resolve_inside(base: Path, name: str) -> Path:
    """``name`` relative to ``base`` (absolute names are kept), resolved."""
    path = Path(name).expanduser()
    return (path if path.is_absolute() else Path(base) / path).resolve()


def label_spec(options: IngestOptions):
    """The LabelSpec of ``options.label_column`` (class names from ml.vocab for known keys)."""
    from ml import vocab
    from webapp.catalog.services.ingest_tables import LabelSpec

    if not options.label_column:
        return None
    names = {"gz1": vocab.GZ1_CLASSES}.get(options.label_key, {})
    return LabelSpec(options.label_column, options.label_key or "label", dict(names))
