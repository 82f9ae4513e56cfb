"""Search by an uploaded image: a FITS, PNG or JPEG cutout -> the survey's pixel format.

The image is decoded with the catalogue's ingestion code (webapp/catalog/services/
ingest_pixels.py and ingest_fits.py: header-checked decoding, decompression-bomb guard,
centre crop, flux-conserving resample), so an uploaded cutout is preprocessed the same way
as the survey it is compared with, then embedded with the set's encoder through
``webapp.embeddings.services.encoding.embed_images`` (which applies the encoder's own
resize/normalisation, identical to embedding a survey).  Nothing is written anywhere:
the bytes live in memory (or in Django's temporary upload file, deleted after the request).

Rules per survey kind:
  flux surveys (simulated, FITS): a FITS file with exactly the survey's bands, one image
    HDU per band (matched by FILTER/EXTNAME, else in order) or one (C, H, W) cube.  With a
    celestial WCS the central field of view the survey's cutouts cover is taken and
    resampled to the survey's pixel scale; without one, survey pixels are assumed and the
    central H x W pixels are kept.  PNG/JPEG are refused (no flux calibration).
  rgb surveys (JPEG/PNG colour cutouts): a PNG or JPEG with 3 colour channels, centre-cropped
    like the survey's ingestion (its crop fraction is read from the ingest job) and resized.
"""
from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from webapp.catalog.services.ingest_pixels import (DEFAULT_MAX_PIXELS, IngestError, check_pixel_budget,
                                                   decode_rgb, open_image_checked, resize_bands)

MAX_BAD_PIXEL_FRACTION = 0.5  # more NaN/inf than this and the cutout is refused


class UploadError(ValueError):
    """The upload cannot be used; the message says why (HTTP 400)."""


class EncoderUnavailable(RuntimeError):
    """This server cannot embed images (the encoding service is missing)."""


@dataclass
class PreparedImage:
    pixels: np.ndarray            # (C, H, W) float32 in the survey's units
    file_format: str              # "FITS", "PNG" or "JPEG"
    notes: list[str] = field(default_factory=list)


def human_bytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB"


def check_upload_size(size: int | None) -> None:
    limit = settings.MAX_UPLOAD_BYTES
    if size is not None and int(size) > limit:
        raise UploadError(f"the file is {human_bytes(int(size))}; uploads are limited to {human_bytes(limit)}")


def sniff(head: bytes) -> str | None:
    if head.startswith(b"SIMPLE  ="):
        return "FITS"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x1f\x8b"):
        return "GZIP"
    return None


def read_upload(uploaded) -> bytes:
    """All bytes of a Django UploadedFile (size checked first), gunzipped when gzip."""
    if uploaded is None:
        raise UploadError("no file was uploaded; choose a FITS, PNG or JPEG file")
    check_upload_size(getattr(uploaded, "size", None))
    data = uploaded.read(settings.MAX_UPLOAD_BYTES + 1)
    check_upload_size(len(data))
    if not data:
        raise UploadError("the uploaded file is empty")
    if sniff(data[:16]) == "GZIP":  # .fits.gz: decompress with a ceiling (gzip bombs)
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(settings.MAX_UPLOAD_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise UploadError(f"corrupt gzip file ({exc})") from None
        if len(data) > settings.MAX_UPLOAD_BYTES:
            raise UploadError(f"the file decompresses to more than {human_bytes(settings.MAX_UPLOAD_BYTES)}")
    return data


def prepare_upload(data: bytes, survey, crop_fraction: float | None = None) -> PreparedImage:
    """Decode ``data`` into (C, H, W) float32 pixels like ``survey``'s image store."""
    kind = sniff(data[:16])
    if kind is None:
        raise UploadError("not a FITS, PNG or JPEG file (unrecognised contents)")
    if kind == "GZIP":
        raise UploadError("gzip inside gzip is not supported")
    _, n_bands, height, width = (int(s) for s in survey.image_shape)
    if survey.image_kind == "rgb":
        if kind == "FITS":
            raise UploadError(f"survey {survey.name} holds colour JPEG/PNG cutouts; upload a PNG or JPEG, not FITS")
        return _prepare_rgb(data, kind, survey, height, crop_fraction)
    if kind != "FITS":
        raise UploadError(f"survey {survey.name} holds calibrated flux in {n_bands} band(s) "
                          f"({', '.join(survey.bands)}); upload a FITS cutout with those bands — a {kind} "
                          "has no flux calibration")
    return _prepare_fits(data, survey, n_bands, height)


# ----------------------------------------------------------------- PNG / JPEG

def _prepare_rgb(data: bytes, kind: str, survey, size: int, crop_fraction: float | None) -> PreparedImage:
    notes = []
    try:
        img = open_image_checked(io.BytesIO(data))
        mode, dims = img.mode, img.size
        img.close()
    except IngestError as exc:
        raise UploadError(f"corrupt {kind}: {exc}") from None
    if mode in ("L", "LA", "I", "I;16", "F", "1"):
        raise UploadError(f"the image has 1 band (greyscale, mode {mode}); survey {survey.name} "
                          "has 3 colour bands — upload a colour PNG or JPEG")
    crop = survey_crop_fraction(survey) if crop_fraction is None else float(crop_fraction)
    if not 0 < crop <= 1:
        raise UploadError(f"crop fraction {crop} must be in (0, 1]")
    try:
        pixels = decode_rgb(io.BytesIO(data), size, crop)
    except IngestError as exc:
        raise UploadError(f"corrupt {kind}: {exc}") from None
    notes.append(f"{kind} {dims[0]}×{dims[1]} px, central {crop:.0%} resized to {size} px like the survey")
    return PreparedImage(pixels, kind, notes)


def survey_crop_fraction(survey) -> float:
    """The crop fraction this survey was ingested with (from its ingest job), else 1.0."""
    from webapp.catalog.services.ingest import build_options
    from webapp.jobs.models import Job

    job = (Job.objects.filter(kind="ingest", status=Job.Status.SUCCEEDED, result__survey_id=survey.pk)
           .order_by("-created_at").first())
    if job is None:
        return 1.0
    try:
        params = {k: v for k, v in job.params.items() if not k.startswith("_") and k != "path"}
        return float(build_options(params)[1].crop_fraction)
    except (IngestError, TypeError, ValueError):
        return 1.0


# ----------------------------------------------------------------- FITS

class _Limits:
    max_pixels = DEFAULT_MAX_PIXELS


def _prepare_fits(data: bytes, survey, n_bands: int, size: int) -> PreparedImage:
    from webapp.catalog.services.ingest_fits import _centre_radec, image_hdus, open_fits

    notes = []
    try:
        with open_fits(io.BytesIO(data)) as hdul:
            hdus = image_hdus(hdul, _Limits)
            cube = _stack_bands(hdus, survey, n_bands)
            file_scale = _pixel_scale_arcsec(hdus[0][1].header)
            centre = _centre_radec(hdus[0][1].header)
    except IngestError as exc:
        raise UploadError(f"corrupt FITS: {exc}") from None
    cube = _fix_bad_pixels(cube, notes)
    _, h, w = cube.shape
    crop, detail = _fits_crop(min(h, w), size, file_scale, survey.pixel_scale_arcsec)
    notes.append(f"FITS {w}×{h} px in {n_bands} band(s); {detail}")
    if centre:
        notes.append(f"image centre RA {centre['ra']:.5f}°, Dec {centre['dec']:+.5f}° (from its WCS)")
    try:
        pixels = resize_bands(cube, size, crop, conserve_flux=True)
    except IngestError as exc:
        raise UploadError(str(exc)) from None
    return PreparedImage(pixels, "FITS", notes)


def _stack_bands(hdus: list, survey, n_bands: int) -> np.ndarray:
    """(C, H, W) float32 in the survey's band order, or UploadError naming the mismatch."""
    from webapp.catalog.services.ingest_fits import BandMismatch, stack_bands

    bands = list(survey.bands)
    try:
        return stack_bands(hdus, bands, read=_data)
    except BandMismatch as exc:
        if exc.kind == "cube":
            message = f"the FITS cube has {exc.found}"
        elif exc.kind == "hdus":
            message = f"the FITS file has {exc.found} image HDU(s) ({', '.join(n for n, _ in hdus)})"
        else:
            raise UploadError(f"band images differ in shape or are not 2-D: {exc.found}") from None
        raise UploadError(f"wrong number of bands: {message}, survey {survey.name} has {n_bands} "
                          f"({', '.join(bands)})") from None


def _data(hdu) -> np.ndarray:
    check_pixel_budget(tuple(hdu.header.get(f"NAXIS{k}", 0) for k in range(1, hdu.header.get("NAXIS", 0) + 1)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = hdu.data
    except Exception as exc:  # astropy: truncated data, bad BITPIX, ...
        raise UploadError(f"corrupt FITS data ({exc.__class__.__name__}: {exc})") from None
    if data is None:
        raise UploadError("corrupt FITS: an image HDU has no data")
    return np.asarray(data, dtype=np.float32)


def _fix_bad_pixels(cube: np.ndarray, notes: list) -> np.ndarray:
    bad = ~np.isfinite(cube)
    if not bad.any():
        return cube
    fraction = bad.mean()
    if fraction > MAX_BAD_PIXEL_FRACTION:
        raise UploadError(f"{fraction:.0%} of the pixels are NaN or inf; the cutout is unusable")
    notes.append(f"{int(bad.sum())} NaN/inf pixels set to 0")
    return np.where(bad, 0.0, cube).astype(np.float32)


def _pixel_scale_arcsec(header) -> float | None:
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
            if not wcs.has_celestial:
                return None
            return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600)
    except Exception:  # a broken WCS: fall back to survey pixels
        return None


def _fits_crop(side_px: int, size: int, file_scale: float | None, survey_scale: float | None) -> tuple[float, str]:
    """Crop fraction of the shorter side that covers the survey cutout's field of view."""
    if file_scale and survey_scale:
        need_px = size * survey_scale / file_scale  # file pixels across the survey's field
        crop = min(1.0, need_px / side_px)
        detail = (f"WCS pixel scale {file_scale:.3f}″ vs survey {survey_scale:.3f}″: central "
                  f"{crop * side_px * file_scale:.1f}″ resampled to {size} px")
        if need_px > side_px:
            detail += f" (the file covers less than the survey's {size * survey_scale:.1f}″ field)"
        return crop, detail
    crop = min(1.0, size / side_px)
    detail = (f"no WCS pixel scale, so survey pixels are assumed: central {min(size, side_px)} px kept"
              + ("" if side_px >= size else f", upsampled to {size} px"))
    return crop, detail


# ----------------------------------------------------------------- embedding

def embed_prepared(encoder, prepared: PreparedImage) -> np.ndarray:
    """(D,) float32 embedding of the prepared cutout with the set's encoder."""
    try:
        from webapp.embeddings.services import encoding
    except ImportError as exc:
        raise EncoderUnavailable("this server cannot embed images yet (the encoding service is missing: "
                                 f"{exc})") from None
    try:
        vectors = np.asarray(encoding.embed_images(encoder, prepared.pixels[None].astype(np.float32)))  # (1, D)
    except encoding.EncoderUnavailable as exc:
        raise EncoderUnavailable(str(exc)) from None
    except ValueError as exc:  # embed_images explains shape/band mismatches
        raise UploadError(f"the encoder cannot use this image: {exc}") from None
    if vectors.ndim != 2 or len(vectors) != 1 or not np.isfinite(vectors).all():
        raise UploadError(f"the encoder returned an unusable embedding of shape {vectors.shape}")
    return vectors[0]
