"""Cutout rendering: survey pixels -> display PNGs, cached on disk.

How pixels become colours is in ml/stretch.py (Lupton composites, asinh
band views, RGB pass-through, one stretch per survey).  This module reads the
image store through one cached reader per survey, encodes PNGs and caches
them at DATA_DIR/cache/thumbs/<survey_id>/<checksum[:8]>-r<RENDER_VERSION>/<image_index>_<variant>.png
(variant "composite-96", "b1-128", ...); a re-ingest changes the store checksum
and so, silently, the whole cache.  services/static_thumbs.py names these files in
content-addressed, immutable URLs; services/atlas.py pastes them into sprite atlases.  The survey's stretch is kept beside the
thumbnails as stretch.json, so every web and worker process shares one.

A survey without a local image store takes its cutouts from its cutout URL template
(services/remote_cutouts.py, cached there): galaxy_thumbnail() is the one entry point that
serves both kinds, and a placeholder where no pixels can be had.
"""
from __future__ import annotations

import io
import json
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.atomic import write_atomic
from ml.progress import check_cancelled
from ml.stretch import SurveyStretch, band_grey, composite_rgb, estimate_stretch
from webapp.catalog.services import remote_cutouts
from webapp.catalog.services.store_cache import read_images

DEFAULT_THUMB_SIZE = 96    # px; grid cells are ~100-130 CSS px wide
MIN_SIZE, MAX_SIZE = 16, 512
PNG_COMPRESS_LEVEL = 1     # zlib level: ~5x faster than the default 6
# Run-length zlib strategy: sky noise defeats LZ matching anyway, so RLE is ~30% faster
# than the default strategy and its files are ~7% smaller (96 px composites, ~19 kB).
PNG_ZLIB_STRATEGY = zlib.Z_RLE
SAMPLE_IMAGES = 128        # images read to estimate a survey's stretch (~50 ms; percentiles settle by ~100)
STRETCH_FILE = "stretch.json"
# Bump when the pixels -> PNG mapping changes (ml/stretch.py, encode_png): it is part of every
# thumbnail's cache directory and content key, so browsers holding year-long immutable copies
# and the on-disk cache both move to the new rendering instead of mixing the two.
RENDER_VERSION = 1


class RenderError(ValueError):
    """Bad render request (unknown band, size out of range)."""


def encode_png(pixels: np.ndarray, size: int) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes, Lanczos-resampled to size x size."""
    img = Image.fromarray(pixels)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_ZLIB_STRATEGY)
    return buf.getvalue()


# ----------------------------------------------------------------- survey-level cache

_stretch_lock = threading.Lock()
_stretches: dict[tuple, SurveyStretch] = {}


def cache_dir(survey) -> Path:
    stem = survey.image_checksum[:8] or "nochksum"
    return Path(settings.DATA_DIR) / "cache" / "thumbs" / str(survey.pk) / f"{stem}-r{RENDER_VERSION}"


def survey_stretch(survey) -> SurveyStretch:
    """The survey's display parameters: memory, then stretch.json beside the thumbnails, then estimated."""
    key = (survey.pk, survey.image_checksum, str(settings.DATA_DIR))
    with _stretch_lock:
        if key in _stretches:
            return _stretches[key]
        path = cache_dir(survey) / STRETCH_FILE
        try:
            stored = json.loads(path.read_text())
            params = SurveyStretch(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
        except (FileNotFoundError, ValueError, TypeError):
            n = int(survey.image_shape[0]) if survey.image_shape else survey.n_galaxies
            sample = np.unique(np.linspace(0, max(n - 1, 0), min(SAMPLE_IMAGES, max(n, 1))).astype(int))
            images = read_images(survey.store_abspath, sample.tolist())
            params = estimate_stretch(np.asarray(images, dtype=np.float32), survey.image_kind)
            write_atomic(path, json.dumps(asdict(params)), durable=False)
        _stretches[key] = params
        return params


# ----------------------------------------------------------------- public API

def parse_band(survey, band: str | int | None) -> str:
    """Normalise a band request to a variant stem: "composite" or "b<index>"."""
    if band in (None, "", "composite"):
        return "composite"
    bands = list(survey.bands or [])
    n_bands = int(survey.image_shape[1]) if survey.image_shape else len(bands)
    if isinstance(band, str) and band in bands:
        return f"b{bands.index(band)}"
    try:
        index = int(band)
    except (TypeError, ValueError):
        raise RenderError(f"band must be 'composite', a band index or one of {bands}") from None
    if not 0 <= index < n_bands:
        raise RenderError(f"band index {index} out of range 0..{n_bands - 1}")
    return f"b{index}"


def parse_size(size) -> int:
    try:
        value = int(size if size not in (None, "") else DEFAULT_THUMB_SIZE)
    except (TypeError, ValueError):
        raise RenderError("size must be an integer number of pixels") from None
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise RenderError(f"size must be between {MIN_SIZE} and {MAX_SIZE} px")
    return value


def variant_name(band_stem: str, size: int) -> str:
    return f"{band_stem}-{size}"


def thumb_path(survey, image_index: int, variant: str) -> Path:
    return cache_dir(survey) / f"{int(image_index)}_{variant}.png"


def render_pixels(survey, image: np.ndarray, band_stem: str) -> np.ndarray:
    params = survey_stretch(survey)
    if band_stem == "composite":
        return composite_rgb(image, params)
    return band_grey(image, int(band_stem[1:]), params)


def placeholder_png(size: int = DEFAULT_THUMB_SIZE) -> bytes:
    """The cutout of a galaxy whose survey holds no pixels and has no cutout service (a
    catalogue-only survey, e.g. imported embeddings): the same image galaxy_thumbnail() serves."""
    return remote_cutouts.placeholder(size, "no pixels", text="no cutout").data


def thumbnail_png(survey, image_index: int, size: int = DEFAULT_THUMB_SIZE, band: str = "composite") -> bytes:
    """PNG bytes of one cutout (cached). ``band`` is "composite" or "b<index>".
    A survey without images (catalogue only) gets :func:`placeholder_png`."""
    if not survey.has_images:
        return placeholder_png(size)
    path = thumb_path(survey, image_index, variant_name(band, size))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    return thumbnail_file(survey, image_index, size, band).read_bytes()


def composite_tiles(survey, image_indices, size: int) -> dict[int, Image.Image]:
    """{image index: RGB size x size composite} for a sprite atlas: decoded from the thumbnail
    files that exist, rendered in memory for the rest (one store read), without writing their
    PNGs.  A cold 100-cell atlas otherwise paid a PNG encode and decode per member (~2.5 ms
    each, most of its ~300 ms) for files only a later hover might read; the pixels are the
    same, as PNG is lossless."""
    out: dict[int, Image.Image] = {}
    missing = []
    for index in sorted({int(i) for i in image_indices}):
        try:
            data = thumb_path(survey, index, variant_name("composite", size)).read_bytes()
        except FileNotFoundError:
            missing.append(index)
            continue
        out[index] = Image.open(io.BytesIO(data)).convert("RGB")
    if missing:
        for index, image in zip(missing, read_images(survey.store_abspath, missing)):
            img = Image.fromarray(render_pixels(survey, np.asarray(image, dtype=np.float32), "composite"))
            out[index] = img if img.size == (size, size) else img.resize((size, size), Image.Resampling.LANCZOS)
    return out


def render_missing(survey, image_indices, size: int = DEFAULT_THUMB_SIZE, band: str = "composite") -> int:
    """Render the thumbnails of these images that are not on disk yet, reading the store once for
    all of them (an atlas page, a pre-render batch); returns how many were rendered."""
    return render_missing_variants(survey, image_indices, [(band, size)])


def render_missing_variants(survey, image_indices, variants) -> int:
    """render_missing() for several (band stem, size) variants at once, e.g. the labeling page's
    512 px and 96 px composites and 128 px bands: the store is read once for every image that
    misses any of them, and each band's stretch is computed once for all its sizes.  Returns how
    many files were rendered."""
    variants = list(dict.fromkeys((band, int(size)) for band, size in variants))
    missing: dict[int, list[tuple[str, int]]] = {}
    for index in sorted({int(i) for i in image_indices}):
        todo = [(b, s) for b, s in variants if not thumb_path(survey, index, variant_name(b, s)).exists()]
        if todo:
            missing[index] = todo
    if not missing:
        return 0
    images = read_images(survey.store_abspath, list(missing))
    for (index, todo), image in zip(missing.items(), images):
        image = np.asarray(image, dtype=np.float32)
        stretched: dict[str, np.ndarray] = {}
        for band, size in todo:
            if band not in stretched:
                stretched[band] = render_pixels(survey, image, band)
            # A cache, not durable: a lost file is rendered again.
            write_atomic(thumb_path(survey, index, variant_name(band, size)), encode_png(stretched[band], size),
                         durable=False)
    return sum(len(todo) for todo in missing.values())


def thumbnail_file(survey, image_index: int, size: int = DEFAULT_THUMB_SIZE, band: str = "composite") -> Path:
    """The cached PNG file of one local-store thumbnail, rendered first if missing."""
    path = thumb_path(survey, image_index, variant_name(band, size))
    if not path.exists():
        render_missing(survey, [image_index], size, band)
    return path


# ----------------------------------------------------------------- local or remote

LOCAL_MAX_AGE = 86400  # s of browser caching; the URL carries the store checksum


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    cache_control: str
    etag: str | None    # None for placeholders (never revalidated)
    ok: bool


def has_local_store(survey) -> bool:
    return bool(survey.store_path)


def thumbnail_etag(survey, galaxy, size: int, band: str) -> str | None:
    """The ETag a successful thumbnail of these parameters carries (no I/O), or None."""
    if survey.remote_pixels:
        try:
            return remote_cutouts.url_etag(remote_cutouts.cutout_url(survey, galaxy, size))
        except remote_cutouts.FetchError:
            return None
    if not has_local_store(survey):
        return None
    return f'"{(survey.image_checksum or "x")[:12]}-{galaxy.image_index}-{variant_name(band, size)}"'


def galaxy_thumbnail(survey, galaxy, size: int = DEFAULT_THUMB_SIZE, band: str = "composite",
                     *, fetch: bool = True) -> Thumbnail:
    """One galaxy's cutout, from the local store (``band`` honoured) or from the survey's remote
    cutout service (always the colour image; ``fetch=False``: cached ones only), else a placeholder.
    Local-store errors (StoreMissing, ...) propagate as from thumbnail_png()."""
    if has_local_store(survey):
        data = thumbnail_png(survey, galaxy.image_index, size, band)
        return Thumbnail(data, "image/png", f"public, max-age={LOCAL_MAX_AGE}",
                         thumbnail_etag(survey, galaxy, size, band), True)
    if survey.remote_pixels:
        cut = remote_cutouts.galaxy_cutout(survey, galaxy, size, fetch=fetch)
    else:
        cut = remote_cutouts.placeholder(size, "no pixels", text="no cutout")
    etag = thumbnail_etag(survey, galaxy, size, band) if cut.ok else None
    return Thumbnail(cut.data, cut.content_type, cut.cache_control, etag, cut.ok)


def prerender_survey(survey, size: int = DEFAULT_THUMB_SIZE, band: str = "composite",
                     batch: int = 256, progress=None) -> dict:
    """Render every missing thumbnail of a survey, reading the store in batches."""
    n = int(survey.image_shape[0]) if survey.image_shape else survey.n_galaxies
    if not survey.has_images:
        return {"survey_id": survey.pk, "rendered": 0, "skipped": n, "variant": variant_name(band, size),
                "seconds": 0.0, "note": "catalogue-only survey: no pixels to render"}
    variant = variant_name(band, size)
    start, rendered = time.perf_counter(), 0
    for lo in range(0, n, batch):
        rendered += render_missing(survey, range(lo, min(lo + batch, n)), size, band)
        if progress is not None:
            progress(min(lo + batch, n), n, f"{min(lo + batch, n)}/{n} thumbnails")
            check_cancelled(progress)
    return {"survey_id": survey.pk, "rendered": rendered, "skipped": n - rendered,
            "variant": variant, "seconds": round(time.perf_counter() - start, 2)}


def run_prerender_job(job, progress) -> dict:
    """Job handler: params {"survey_id": id, "size": 96 (optional)}."""
    from webapp.catalog.models import Survey
    survey = Survey.objects.get(pk=int(job.params["survey_id"]))
    if survey.status != Survey.Status.READY:
        raise ValueError(f"survey {survey.slug} is {survey.status}, not ready")
    if not has_local_store(survey):
        raise ValueError(f"survey {survey.slug} has no local image store; its cutouts are fetched "
                         "from the remote cutout service when first shown")
    return prerender_survey(survey, size=parse_size(job.params.get("size")), progress=progress)
