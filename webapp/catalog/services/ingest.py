"""Ingest a survey from files: read, check, decode, publish (all or nothing).

    report = ingest("folder", "/work/shared/data/gz1_sdss", build_options({"preset": "gz1_sdss"}))

Formats (readers in ingest_*.py): ``folder`` (JPEG/PNG + CSV), ``fits``,
``hdf5`` (Galaxy10-style), ``gz_decals``, ``gz2``, ``gz_kaggle``.

Bad input never aborts the other objects: every problem becomes a line
``"<file>: <reason>"`` in ``report.errors`` and the good objects are published
through services.surveys (atomic; a re-run with the same input changes nothing).
If no object is good, NoGoodRows is raised and nothing is written.
"""
from __future__ import annotations

import logging

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.progress import Progress
from webapp.catalog.services.ingest_pixels import IngestError, finite_or_fix
from webapp.catalog.services.ingest_types import Candidate, IngestOptions, Plan
from webapp.catalog.services.surveys import GalaxyRow, SurveyPublisher

BATCH = 256           # images per store append (~12 MB at 3x64x64)
MAX_RESULT_ERRORS = 200

FORMATS: dict[str, str] = {   # format -> "module:function" returning a Plan
    "folder": "ingest_folder:plan_folder",
    "fits": "ingest_fits:plan_fits",
    "hdf5": "ingest_hdf5:plan_hdf5",
    "gz_decals": "ingest_galaxyzoo:plan_gz_decals",
    "gz2": "ingest_galaxyzoo:plan_gz2",
    "gz_kaggle": "ingest_galaxyzoo:plan_gz_kaggle",
}
# Per-format defaults, applied below a preset and explicit options.
FORMAT_DEFAULTS: dict[str, dict] = {
    "gz_decals": {"crop_fraction": 0.5, "viewer_url_template": "https://www.legacysurvey.org/viewer?ra={ra}&dec={dec}&zoom=15&layer=ls-dr10"},
    "gz2": {"crop_fraction": 0.5, "psf_fwhm_arcsec": 1.4, "viewer_url_template": "https://skyserver.sdss.org/dr16/en/tools/chart/navi.aspx?ra={ra}&dec={dec}"},
    "gz_kaggle": {"crop_fraction": 0.5, "psf_fwhm_arcsec": 1.4},
}
log = logging.getLogger(__name__)

PRESETS: dict[str, dict] = {
    # The Galaxy Zoo 1 SDSS sample in ../shared/data/gz1_sdss (README there).
    "gz1_sdss": {
        "format": "folder", "survey": "SDSS GZ1", "catalog": "smallCSV_class.csv", "id_column": "OBJID",
        "image_pattern": "images/{id}.jpeg",
        "crop_fraction": 0.4,   # the galaxy fills about the central 40% of the 423 px cutout
        "size": 64, "label_column": "CLASS", "label_key": "gz1", "psf_fwhm_arcsec": 1.4,
        # No RA/Dec in this sample, but the DR7 objID opens the object in SDSS's DR7 explorer.
        "viewer_url_template": "https://cas.sdss.org/dr7/en/tools/explore/obj.asp?id={source_id}",
        "description": "SDSS DR7 gri colour cutouts with Galaxy Zoo 1 classes (elliptical, spirals, "
                       "edge-on, merger, star/artifact); central 40% of each 423 px JPEG resized to 64 px.",
        "provenance": "SDSS DR7 JPEG cutouts (Galaxy Zoo 1 style, variable pixel scale of 0.024 petroR90 "
                      "per pixel); classes from Lintott et al. 2008/2011 via the smallGZ1 sample of "
                      "Eggochi/Proyecto_Galaxias (commit 5226e5e4e193).",
    },
}


class NoGoodRows(IngestError):
    """Nothing could be ingested; ``report`` lists why."""

    def __init__(self, message: str, report: "IngestReport"):
        super().__init__(message)
        self.report = report


@dataclass
class IngestReport:
    format: str
    path: str
    survey: str = ""
    slug: str = ""
    survey_id: int | None = None
    found: int = 0                 # catalogue objects considered (after duplicates and --limit)
    ingested: int = 0
    errors: list[str] = field(default_factory=list)   # "file: reason", one per problem
    notes: list[str] = field(default_factory=list)
    shape: list = field(default_factory=list)         # [N, C, H, W] of the store
    checksum: str = ""
    changes: dict = field(default_factory=dict)       # created/updated/unchanged/deleted galaxies
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return len(self.errors)

    def as_result(self, max_errors: int = MAX_RESULT_ERRORS) -> dict:
        """JSON for Job.result: counts plus at most ``max_errors`` problem lines."""
        data = asdict(self)
        data["skipped"] = self.skipped
        data["errors"] = self.errors[:max_errors]
        data["errors_truncated"] = max(0, len(self.errors) - max_errors)
        return data

    def summary(self) -> str:
        return (f"{self.survey}: {self.ingested} of {self.found} objects ingested, {self.skipped} problems, "
                f"{self.seconds:.1f} s")


def build_options(params: dict) -> tuple[str, IngestOptions]:
    """(format, options) from a flat dict (CLI args, form data, job params).

    Precedence: explicit non-empty values > preset > format defaults > IngestOptions defaults.
    """
    params = {k: v for k, v in params.items() if v not in (None, "", [], ())}
    preset_name = params.get("preset", "")
    if preset_name and preset_name not in PRESETS:
        raise IngestError(f"unknown preset {preset_name!r}; presets: {', '.join(PRESETS)}")
    preset = dict(PRESETS.get(preset_name, {}))
    fmt = params.pop("format", None) or preset.get("format")
    if preset.get("format") and fmt != preset["format"]:
        raise IngestError(f"preset {preset_name!r} is for format {preset['format']!r}, not {fmt!r}")
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    preset.pop("format", None)
    merged = {**FORMAT_DEFAULTS.get(fmt, {}), **preset, **params}
    unknown = set(merged) - IngestOptions.field_names()
    if unknown:
        raise IngestError(f"unknown ingest option(s) {sorted(unknown)}")
    if isinstance(merged.get("bands"), str):
        merged["bands"] = [b.strip() for b in merged["bands"].split(",") if b.strip()]
    options = IngestOptions(**merged)
    options = replace(options, size=int(options.size), limit=int(options.limit), workers=int(options.workers),
                      crop_fraction=float(options.crop_fraction), max_pixels=int(options.max_pixels))
    return fmt, options.validate()


def ingest(fmt: str, path: str | Path, options: IngestOptions, progress: Progress | None = None) -> IngestReport:
    """Read ``path`` in format ``fmt`` and publish the good objects as survey ``options.survey``."""
    options.validate()
    start = time.monotonic()
    report = IngestReport(format=fmt, path=str(path), survey=options.survey)
    plan = _reader(fmt)(Path(path), options)
    try:
        report.errors += plan.errors
        report.notes += plan.notes
        candidates = _unique(plan.candidates, report.errors)
        if options.limit:
            candidates = candidates[:options.limit]
        report.found = len(candidates)
        spec = _survey_spec(fmt, path, options, plan)
        with SurveyPublisher(spec) as publisher:
            for rows, images in _decoded_batches(candidates, plan, options, report.errors, progress):
                publisher.append(rows, images)
            if progress and publisher.n:
                progress(report.found, report.found, f"saving {publisher.n} galaxies")
            if publisher.n == 0:
                report.seconds = time.monotonic() - start
                raise NoGoodRows(f"no object of {path} could be ingested ({report.skipped} problems"
                                 f"{': ' + report.errors[0] if report.errors else ''})", report)
        survey = publisher.survey
    finally:
        for close in plan.cleanup:
            close()
    report.survey_id, report.slug, report.ingested = survey.pk, survey.slug, survey.n_galaxies
    report.shape, report.checksum, report.changes = list(survey.image_shape), survey.image_checksum, publisher.changes
    report.seconds = round(time.monotonic() - start, 3)
    return report


def _reader(fmt: str):
    from importlib import import_module

    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    module, _, func = FORMATS[fmt].partition(":")
    return getattr(import_module(f"webapp.catalog.services.{module}"), func)


def _unique(candidates: list[Candidate], errors: list[str]) -> list[Candidate]:
    """Keep the first object of each source id and report the others."""
    first: dict[str, str] = {}
    out = []
    for cand in candidates:
        origin = cand.origin or cand.where
        if cand.source_id in first:
            errors.append(f"{origin}: duplicate id {cand.source_id} (kept {first[cand.source_id]})")
            continue
        first[cand.source_id] = origin
        out.append(cand)
    return out


def _decoded_batches(candidates: list[Candidate], plan: Plan, options: IngestOptions,
                     errors: list[str], progress: Progress | None):
    """Yield (rows, (n, C, size, size) images) batches of the objects that decode cleanly."""
    expected = (len(plan.bands), options.size, options.size)
    threads = options.workers if plan.threads_ok else 1
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    total, done = len(candidates), 0
    try:
        for start in range(0, total, BATCH):
            chunk = candidates[start:start + BATCH]
            outcomes = pool.map(_load_one, chunk) if pool else map(_load_one, chunk)
            rows, images = [], []
            for cand, outcome in zip(chunk, outcomes):
                if isinstance(outcome, str):
                    errors.append(f"{cand.where}: {outcome}")
                    continue
                image, extra = outcome
                if image.shape != expected:
                    errors.append(f"{cand.where}: cutout of shape {image.shape}, expected {expected}")
                    continue
                try:
                    image = finite_or_fix(image, options.nan_policy)
                except IngestError as exc:
                    errors.append(f"{cand.where}: {exc}")
                    continue
                ra = cand.ra if cand.ra is not None else extra.get("ra")
                dec = cand.dec if cand.dec is not None else extra.get("dec")
                rows.append(GalaxyRow(cand.source_id, ra, dec, cand.metadata))
                images.append(image)
            done += len(chunk)
            if progress:
                progress(done, total, f"decoded {done}/{total} ({len(errors)} problems)")
            if rows:
                yield rows, np.stack(images)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _load_one(cand: Candidate):
    """(image, extra) or the reason it failed, as a string (never raises for bad input)."""
    try:
        return cand.load()
    except (IngestError, OSError, ValueError) as exc:
        return str(exc) or exc.__class__.__name__
    except Exception as exc:  # a reader library failing in a new way must still cost one object only
        log.warning("unexpected error loading %s", cand.where, exc_info=True)
        return f"unreadable ({exc.__class__.__name__}: {exc})"


def _survey_spec(fmt: str, path, options: IngestOptions, plan: Plan) -> dict:
    scale = options.pixel_scale_arcsec or plan.spec.get("pixel_scale_arcsec")
    if scale and plan.input_side:
        scale = float(scale) * options.crop_fraction * plan.input_side / options.size  # after crop + resize
    defaults = asdict(IngestOptions())
    settings_used = {k: v for k, v in asdict(options).items()
                     if k not in ("survey", "description", "provenance", "workers") and v != defaults[k]}
    provenance = options.provenance or f"Ingested from {fmt} input {Path(path).name}"
    provenance += f" [latentsky ingest {fmt}; options {settings_used}]"
    return {
        "name": options.survey.strip(),
        "description": options.description,
        "bands": plan.bands,
        "image_kind": plan.image_kind,
        "pixel_scale_arcsec": round(scale, 6) if scale else None,
        "psf_fwhm_arcsec": options.psf_fwhm_arcsec or plan.spec.get("psf_fwhm_arcsec"),
        "zero_points": plan.spec.get("zero_points", {}),
        "provenance": provenance,
        "viewer_url_template": options.viewer_url_template,
        "is_simulated": False,
    }


# ----------------------------------------------------------------- allowed roots (browser ingestion)

class PathNotAllowed(IngestError):
    """A browser-supplied path lies outside settings.INGEST_ROOTS."""


def allowed_roots() -> list[Path]:
    return [Path(r).expanduser().resolve() for r in settings.INGEST_ROOTS]


def resolve_allowed_path(raw: str, base: Path | None = None) -> Path:
    """Resolve a server path (absolute, or relative to ``base``) and insist it lies under an allowed root.

    Symlinks and ``..`` are resolved first, so neither can escape a root.
    """
    raw = (raw or "").strip()
    if not raw or "\x00" in raw:
        raise PathNotAllowed("give a server path")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        if base is None:
            raise PathNotAllowed(f"{raw}: give an absolute path under {', '.join(map(str, allowed_roots()))}")
        path = base / path
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed_roots()):
        raise PathNotAllowed(f"{raw}: not under an allowed ingest folder "
                             f"({', '.join(map(str, allowed_roots()))})")
    return resolved
