"""Content-addressed thumbnail URLs: immutable, year-long cacheable, servable without Python.

A thumbnail's URL names what determines its bytes, so the bytes behind a URL never change and
the response can say ``Cache-Control: public, max-age=31536000, immutable``:

    /thumbs/<galaxy id>/<variant>-<digest>.png      e.g. /thumbs/42/composite-96-3fa9c0e1d2b4a6f8.png

``variant`` is render.variant_name() ("composite-96", "b1-128"); ``digest`` is 16 hex digits of a
sha256 over
- a local image store: the store checksum, render.RENDER_VERSION, the image index and the variant;
- a remote-cutout survey: the filled cutout URL (services/remote_cutouts.py), i.e. the template,
  layer, field width, size and the galaxy's position / source id.
A re-ingest, a new template or a rendering change therefore moves every URL, and an old URL
answers 404 instead of new bytes.  Catalogue-only surveys (no pixels, no template) have no key:
their pages keep the revalidated /thumbs/<id>.png placeholder URL.

The bytes come from render.py's on-disk cache (rendered on first request or by the pre-render
job) or from remote_cutouts' LRU cache; the view answers them as a file, or hands the path to
nginx (settings.ACCEL_REDIRECT) relative to cache_root().  A placeholder (a failed fetch) is
never given the immutable header.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from webapp.catalog.services import remote_cutouts
from webapp.catalog.services import render

IMMUTABLE = "public, max-age=31536000, immutable"
DIGEST_CHARS = 16      # 64 bits: collisions need ~4e9 variants of one galaxy
# The fields a key reads: querysets that build URLs for a page load these (no query per galaxy).
SURVEY_FIELDS = ("id", "image_checksum", "image_kind", "store_path", "cutout_url_template", "cutout_layer",
                 "cutout_field_arcsec")
GALAXY_FIELDS = ("id", "image_index", "ra", "dec", "source_id")
SURVEY_ONLY = tuple(f"survey__{f}" for f in SURVEY_FIELDS)   # for Galaxy.objects.select_related("survey").only()
_KEY_RE = re.compile(r"^(composite|b\d{1,3})-(\d{1,4})-([0-9a-f]{%d})$" % DIGEST_CHARS)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fields_loaded(galaxy, survey) -> bool:
    """True when computing a key costs no query (the fields are not deferred)."""
    return not (galaxy.get_deferred_fields() & set(GALAXY_FIELDS)
                or survey.get_deferred_fields() & set(SURVEY_FIELDS))


def content_digest(survey, galaxy, size: int, band: str = "composite") -> str | None:
    """The digest part of a thumbnail's key; None where the bytes are not content-addressable."""
    if render.has_local_store(survey):
        if not survey.image_checksum:
            return None
        variant = render.variant_name(band, size)
        return _sha(f"local|{survey.image_checksum}|r{render.RENDER_VERSION}|{int(galaxy.image_index)}|{variant}")
    if survey.remote_pixels:
        try:
            url = remote_cutouts.cutout_url(survey, galaxy, size)
        except remote_cutouts.FetchError:   # no position: the placeholder, never immutable
            return None
        return _sha(f"remote|{url}")
    return None


def content_key(survey, galaxy, size: int, band: str = "composite") -> str | None:
    """"<variant>-<digest>" of one thumbnail, or None (see content_digest).  Remote cutouts are
    one colour image, so their band is always "composite"."""
    if not render.has_local_store(survey):
        band = "composite"
    digest = content_digest(survey, galaxy, size, band)
    return None if digest is None else f"{render.variant_name(band, size)}-{digest[:DIGEST_CHARS]}"


def immutable_url(galaxy, survey, size: int, band: str = "composite") -> str | None:
    """/thumbs/<id>/<key>.png, or None (no key, or the fields it needs were not loaded)."""
    if not fields_loaded(galaxy, survey):
        return None
    key = content_key(survey, galaxy, size, band)
    return None if key is None else f"/thumbs/{galaxy.pk}/{key}.png"


def parse_key(key: str) -> tuple[str, int]:
    """(band stem, size) of a key; RenderError when it is malformed or the size out of range."""
    match = _KEY_RE.match(key or "")
    if not match:
        raise render.RenderError("malformed thumbnail key")
    return match.group(1), render.parse_size(match.group(2))


# ----------------------------------------------------------------- the bytes behind a key

@dataclass(frozen=True)
class ThumbFile:
    path: Path | None     # the cached file, when there is one (FileResponse / X-Accel-Redirect)
    data: bytes | None    # the bytes, when already in memory (remote fetch, placeholder)
    content_type: str
    ok: bool              # False: a placeholder, never immutable

    @property
    def cache_control(self) -> str:
        return IMMUTABLE if self.ok else f"public, max-age={remote_cutouts.PLACEHOLDER_MAX_AGE}"


def thumbnail_file(survey, galaxy, size: int, band: str = "composite") -> ThumbFile:
    """The file (or bytes) of one thumbnail: rendered into render.py's cache if missing, fetched
    into remote_cutouts' cache if missing, else the placeholder.  Local-store errors propagate."""
    if render.has_local_store(survey):
        return ThumbFile(render.thumbnail_file(survey, galaxy.image_index, size, band), None, "image/png", True)
    thumb = render.galaxy_thumbnail(survey, galaxy, size, band)
    path = None
    if thumb.ok:
        cached = remote_cutouts.cache_path(remote_cutouts.cutout_url(survey, galaxy, size))
        path = cached if cached.exists() else None   # not stored (full disk) or evicted meanwhile
    return ThumbFile(path, thumb.data, thumb.content_type, thumb.ok)


def cache_root() -> Path:
    """The folder the X-Accel-Redirect prefix maps to (nginx: ``alias <DATA_DIR>/cache/;``)."""
    return Path(settings.DATA_DIR) / "cache"


def accel_uri(path: Path) -> str | None:
    """The internal URI nginx serves ``path`` under, or None (off, or a file outside the cache)."""
    prefix = settings.ACCEL_REDIRECT
    if not prefix:
        return None
    try:
        rel = path.resolve().relative_to(cache_root().resolve())
    except ValueError:
        return None
    return prefix + rel.as_posix()
