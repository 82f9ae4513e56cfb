"""Cutouts from a remote cutout service, for surveys whose pixels are not stored here.

A survey may carry a cutout URL template (Survey.cutout_url_template) with the
placeholders ``{ra} {dec}`` (ICRS degrees), ``{size}`` (pixels a side), ``{pixscale}``
(arcsec per pixel = the survey's cutout field / size), ``{layer}`` (Survey.cutout_layer)
and ``{source_id}`` (URL-quoted), for example

    https://www.legacysurvey.org/viewer/cutout.jpg?ra={ra}&dec={dec}&size={size}&layer={layer}&pixscale={pixscale}
    https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg?ra={ra}&dec={dec}&scale={pixscale}&width={size}&height={size}

Templates are validated in webapp/catalog/cutout_templates.py.  get_cutout() answers the image
bytes of one URL:
- from the on-disk cache, DATA_DIR/cache/remote_cutouts/<k[:2]>/<k>.img with k the sha256 of
  the URL (a changed template or layer changes every key).  A hit sets the file's mtime, and
  a sweep after writes deletes the least recently used files above settings.CUTOUT_CACHE_BYTES.
  Files are written with ml.atomic, so concurrent processes see whole files or none;
- else fetched with a connect and a total read timeout, a byte cap, a content-type check and
  a Pillow decode, at most settings.CUTOUT_CONCURRENCY fetches at once per process.  A request
  that cannot get a slot within settings.CUTOUT_SLOT_WAIT answers the placeholder;
- any failure (timeout, refused, HTTP error, not an image, too large, busy) answers a small
  "cutout unavailable" PNG with ok=False: never cached on disk, the URL is not retried for
  settings.CUTOUT_NEGATIVE_TTL seconds, and each kind of failure per host is logged once a while.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlparse

import requests
import urllib3
from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

from ml.atomic import write_atomic
from webapp.catalog.cutout_templates import (EXAMPLE_TEMPLATES, PLACEHOLDERS, TEMPLATE_HELP,  # noqa: F401
                                             TemplateError, validate_template)

log = logging.getLogger(__name__)

DEFAULT_FIELD_ARCSEC = 64.0   # cutout width (arcsec) when the survey sets none; the Legacy viewer's 256 px x 0.262″
MAX_PIXELS = 2048 * 2048      # decoded image size cap (decompression bombs)
CACHE_DIRNAME = "remote_cutouts"
TOUCH_EVERY = 30.0            # s: a hit refreshes the file's mtime (the LRU clock) at most this often
LOW_WATER = 0.9               # a sweep deletes down to this fraction of the cap
SWEEP_FRACTION = 50           # sweep after each cap/50 bytes written by this process
PARTIAL_MAX_AGE = 3600.0      # s: older *.partial files are leftovers of crashed writers
LOG_EVERY = 300.0             # s between log lines for one (host, failure kind)
PLACEHOLDER_MAX_AGE = 60      # s of browser caching for the placeholder
OK_MAX_AGE = 86400            # s of browser caching for a fetched cutout
USER_AGENT = "LatentSky cutout fetcher"
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}


class FetchError(RuntimeError):
    """A remote cutout that could not be fetched; str() is the short reason."""


@dataclass(frozen=True)
class Cutout:
    data: bytes
    content_type: str
    ok: bool            # False: the placeholder
    reason: str = ""    # why not ok: "timeout", "HTTP 404", "busy", ...

    @property
    def cache_control(self) -> str:
        return f"public, max-age={OK_MAX_AGE if self.ok else PLACEHOLDER_MAX_AGE}"


# ----------------------------------------------------------------- templates

def field_arcsec(survey) -> float:
    """Width of a remote cutout on the sky (arcsec)."""
    return float(survey.cutout_field_arcsec or DEFAULT_FIELD_ARCSEC)


def cutout_url(survey, galaxy, size: int) -> str:
    """The URL of one galaxy's cutout of ``size`` px; FetchError when the galaxy lacks a position it needs."""
    template = survey.cutout_url_template
    needs_position = "{ra" in template or "{dec" in template
    if needs_position and (galaxy.ra is None or galaxy.dec is None):
        raise FetchError("no RA/Dec")
    return template.format(
        ra=round(float(galaxy.ra), 7) if galaxy.ra is not None else "",
        dec=round(float(galaxy.dec), 7) if galaxy.dec is not None else "",
        size=int(size), pixscale=round(field_arcsec(survey) / int(size), 5),
        layer=quote(survey.cutout_layer or "", safe="-_.~"), source_id=quote(str(galaxy.source_id), safe=""))


def url_etag(url: str) -> str:
    return f'"r-{_key(url)[:16]}"'


# ----------------------------------------------------------------- fetch

def fetch_image(url: str, size: int) -> tuple[bytes, str]:
    """(bytes, content type) of a decodable image at ``url``, resized to size x size when it is not;
    raises FetchError."""
    connect, read = settings.CUTOUT_CONNECT_TIMEOUT, settings.CUTOUT_READ_TIMEOUT
    cap = settings.CUTOUT_MAX_BYTES
    try:
        with requests.get(url, timeout=(connect, read), stream=True, allow_redirects=True,
                          headers={"User-Agent": USER_AGENT, "Accept": "image/jpeg,image/png,image/*"}) as resp:
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code}")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not ctype.startswith("image/"):
                raise FetchError(f"content type {ctype or 'missing'}")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise FetchError("too large")
            deadline = time.monotonic() + read
            chunks, total = [], 0
            while chunk := resp.raw.read1(64 * 1024, decode_content=True):  # what has arrived, <= 64 KiB
                total += len(chunk)
                if total > cap:
                    raise FetchError("too large")
                if time.monotonic() > deadline:
                    raise FetchError("timeout")
                chunks.append(chunk)
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
        raise FetchError("timeout") from None
    except urllib3.exceptions.HTTPError as exc:  # read1() raises urllib3's own errors
        raise FetchError(f"read failed ({type(exc).__name__})") from None
    except requests.exceptions.ConnectionError:
        raise FetchError("connection failed") from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(f"request failed ({type(exc).__name__})") from None
    return _checked_image(b"".join(chunks), size)


def _checked_image(body: bytes, size: int) -> tuple[bytes, str]:
    try:
        with Image.open(io.BytesIO(body)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise FetchError("image too large")
            img.load()
            if img.format in _MIME and img.size == (size, size) and img.mode in ("RGB", "L"):
                return body, _MIME[img.format]
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    except FetchError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FetchError("not a decodable image") from None
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), "image/jpeg"


# ----------------------------------------------------------------- cache

def cache_root() -> Path:
    return Path(settings.DATA_DIR) / "cache" / CACHE_DIRNAME


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def cache_path(url: str) -> Path:
    key = _key(url)
    return cache_root() / key[:2] / f"{key[:40]}.img"


def _sniff(data: bytes) -> str:
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


def read_cached(url: str) -> bytes | None:
    path = cache_path(url)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        now = time.time()
        if now - path.stat().st_mtime > TOUCH_EVERY:
            os.utime(path, (now, now))  # the LRU clock: mtime = last use
    except FileNotFoundError:  # evicted by another process meanwhile; the bytes are still good
        pass
    return data


_sweep_lock = threading.Lock()
_written = {"bytes": 0, "swept": False}


def store(url: str, data: bytes) -> None:
    write_atomic(cache_path(url), data, durable=False)  # a cache: lost files are fetched again
    cap = settings.CUTOUT_CACHE_BYTES
    with _sweep_lock:
        _written["bytes"] += len(data)
        due = not _written["swept"] or _written["bytes"] >= max(cap // SWEEP_FRACTION, 1)
        if due:
            _written["bytes"], _written["swept"] = 0, True
    if due:
        evict(cap)


def cache_usage() -> tuple[int, int]:
    """(files, bytes) in the remote cutout cache."""
    files = [f for f in _cache_files() if not f[0].name.endswith(".partial")]
    return len(files), sum(size for _, size, _ in files)


def _cache_files(root: Path | None = None) -> list[tuple[Path, int, float]]:
    out = []
    root = cache_root() if root is None else root
    try:
        shards = list(os.scandir(root))
    except FileNotFoundError:
        return out
    for shard in shards:
        if not shard.is_dir():
            continue
        try:
            entries = list(os.scandir(shard.path))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            out.append((Path(entry.path), st.st_size, st.st_mtime))
    return out


def evict(cap_bytes: int, root: Path | None = None) -> int:
    """Delete least recently used files until the cache holds at most LOW_WATER x cap (when it
    exceeds cap); returns the files deleted.  Safe with other processes sweeping or reading.
    ``root``: another cache laid out the same way (<root>/<shard>/<file>; services/atlas.py)."""
    now = time.time()
    files, total = [], 0
    for path, size, mtime in _cache_files(root):
        if path.name.endswith(".partial"):
            if now - mtime > PARTIAL_MAX_AGE:
                path.unlink(missing_ok=True)
            continue
        files.append((mtime, path, size))
        total += size
    if total <= cap_bytes:
        return 0
    deleted, target = 0, int(cap_bytes * LOW_WATER)
    for _, path, size in sorted(files, key=lambda f: f[0]):
        if total <= target:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted


# ----------------------------------------------------------------- slots, failures, placeholder

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}
_failures: dict[str, float] = {}   # url -> monotonic time until which it is not retried
_logged: dict[tuple, float] = {}   # (host, reason) -> monotonic time of the last log line
MAX_REMEMBERED = 4096


def fetch_slots() -> threading.BoundedSemaphore:
    n = int(settings.CUTOUT_CONCURRENCY)
    with _slots_lock:
        if n not in _slots:
            _slots[n] = threading.BoundedSemaphore(n)
        return _slots[n]


def _remember_failure(url: str) -> None:
    ttl = settings.CUTOUT_NEGATIVE_TTL
    if ttl <= 0:
        return
    with _slots_lock:
        if len(_failures) >= MAX_REMEMBERED:
            _failures.clear()
        _failures[url] = time.monotonic() + ttl


def _recently_failed(url: str) -> bool:
    with _slots_lock:
        until = _failures.get(url)
        if until is not None and until <= time.monotonic():
            del _failures[url]
            until = None
    return until is not None


def _log_once(url: str, reason: str) -> None:
    key = (urlparse(url).hostname, reason.split(" ")[0] if reason.startswith("HTTP") else reason)
    now = time.monotonic()
    with _slots_lock:
        last = _logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(_logged) >= MAX_REMEMBERED:
            _logged.clear()
        _logged[key] = now
    log.warning("remote cutout unavailable (%s) from %s, e.g. %s; showing placeholders", reason, key[0], url)


def reset_state() -> None:
    """Forget failures, log marks and slots (tests)."""
    with _slots_lock:
        _failures.clear()
        _logged.clear()
        _slots.clear()
    with _sweep_lock:
        _written.update(bytes=0, swept=False)


@lru_cache(maxsize=16)
def placeholder_png(size: int, text: str = "cutout unavailable") -> bytes:
    """A dark size x size PNG saying ``text`` (two lines)."""
    img = Image.new("RGB", (size, size), (28, 30, 36))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(70, 74, 84))
    try:
        font = ImageFont.load_default(size=max(8, size // 9))
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    lines = text.split(" ", 1)
    heights = [draw.textbbox((0, 0), line, font=font) for line in lines]
    y = (size - sum(b[3] - b[1] for b in heights) - 2) / 2
    for line, box in zip(lines, heights):
        draw.text(((size - (box[2] - box[0])) / 2, y - box[1]), line, fill=(150, 155, 165), font=font)
        y += box[3] - box[1] + 2
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def placeholder(size: int, reason: str, text: str = "cutout unavailable") -> Cutout:
    return Cutout(placeholder_png(int(size), text), "image/png", ok=False, reason=reason)


# ----------------------------------------------------------------- public API

def get_cutout(url: str, size: int, *, fetch: bool = True) -> Cutout:
    """The cutout at ``url`` (size x size px): cached, fetched, or the placeholder; never raises
    for remote failures.  ``fetch=False`` answers only from the cache."""
    data = read_cached(url)
    if data is not None:
        return Cutout(data, _sniff(data), ok=True)
    if not fetch:
        return placeholder(size, "not cached")
    if _recently_failed(url):
        return placeholder(size, "failed recently")
    slots = fetch_slots()
    if not slots.acquire(timeout=settings.CUTOUT_SLOT_WAIT):
        _log_once(url, "busy")
        return placeholder(size, "busy")
    try:
        data = read_cached(url)  # fetched by another thread while this one waited
        if data is not None:
            return Cutout(data, _sniff(data), ok=True)
        try:
            data, ctype = fetch_image(url, size)
        except FetchError as exc:
            _remember_failure(url)
            _log_once(url, str(exc))
            return placeholder(size, str(exc))
    finally:
        slots.release()
    try:
        store(url, data)
    except OSError as exc:  # a full or read-only disk: serve the image uncached
        _log_once(url, f"cache write failed: {exc.strerror or exc}")
    return Cutout(data, ctype, ok=True)


def galaxy_cutout(survey, galaxy, size: int, *, fetch: bool = True) -> Cutout:
    """The remote cutout of one galaxy of a survey with a cutout URL template."""
    try:
        url = cutout_url(survey, galaxy, size)
    except FetchError as exc:
        return placeholder(size, str(exc))
    return get_cutout(url, size, fetch=fetch)
