"""Sprite atlases: one JPEG per page of thumbnails instead of one request per galaxy.

A grid of 100 galaxies used to cost 100 thumbnail requests (88 % of all requests under load).
An atlas pastes a page's composite thumbnails, in page order, into a grid of COLUMNS columns:
member i sits at (i % COLUMNS, i // COLUMNS) x size px.  Pages draw each cell with CSS
``background-image`` (the atlas) + ``background-size`` + ``background-position`` (layout()),
and keep the link, title and alt text per cell.

The URL is content-addressed like a single thumbnail's (services/static_thumbs.py):

    /thumbs/atlas/<digest>.jpg?size=96&ids=12,13,14

A member may also be one band of a galaxy, ``<id>:b<N>`` (band N's asinh-stretched cutout, like
/thumbs/<id>.png?band=N): the labeling page gets one atlas per batch of 10 galaxies holding each
one's composite and band thumbnails, instead of 4-6 image requests per galaxy (issue 16).

    /thumbs/atlas/<digest>.jpg?size=96&ids=12,12:b0,12:b1,12:b2,13,13:b0,...

JPEG, not PNG like single thumbnails: a 100-cell page of galaxy images encodes in ~7 ms and
~0.26 MB at quality ATLAS_JPEG_QUALITY against ~130 ms and ~1.7 MB as PNG (zlib level 1), and
cold atlases were the largest CPU cost of the load test (benchmarks/results/load.json).

with ``digest`` a sha256 over the size and, in order, each member's id and thumbnail content key;
a re-ingest or a new cutout template of any member moves it.  The view recomputes the digest from
the database and answers 404 for a stale one, so a URL never names two different images.
An atlas whose members all rendered is written to DATA_DIR/cache/atlases (LRU-evicted above
settings.ATLAS_CACHE_BYTES; a later request rebuilds it) and served immutable.  When a member
fails (a remote fetch times out, a catalogue-only survey) its cell shows the placeholder and the
atlas is neither cached on disk nor immutable, so a later request can complete it.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from PIL import Image

from ml.atomic import write_atomic
from webapp.catalog.services import remote_cutouts, render, static_thumbs

MAX_MEMBERS = 200     # galaxies per atlas: the largest grid page (per=200) and collection page
COLUMNS = 10          # atlas columns: 10 x 96 px = 960 px wide, 20 rows at most
MAX_SIZE = 160        # px per cell: 200 x 160^2 x 3 bytes = 15 MB of pixels at most per build
DIGEST_CHARS = 32
CACHE_DIRNAME = "atlases"
MAX_IDS_TEXT = MAX_MEMBERS * 17  # characters of ?ids=: 200 members "<11 digits>:b<3 digits>,"
SWEEP_FRACTION = 50   # sweep the cache after each cap/50 bytes written by this process
ATLAS_JPEG_QUALITY = 90  # no visible loss on galaxy thumbnails at 96 px; see the module doc
CONTENT_TYPE = "image/jpeg"


class AtlasError(ValueError):
    """A bad atlas request (too many ids, unknown id, bad size); str() says what is wrong."""


@dataclass(frozen=True)
class Layout:
    """How a page draws its cells from one atlas (CSS background-* values)."""
    url: str
    size: int                 # px per cell
    columns: int
    rows: int
    positions: list[str]      # per member, in order: its CSS background-position

    @property
    def background_size(self) -> str:
        # Percentages of the cell: the sprite scales with the cell (grid cells may be wider than size).
        return f"{self.columns * 100}% {self.rows * 100}%"


@dataclass(frozen=True)
class AtlasImage:
    path: Path | None     # the cached file (complete atlases only)
    data: bytes | None
    ok: bool              # every member rendered: cacheable forever

    @property
    def cache_control(self) -> str:
        return static_thumbs.IMMUTABLE if self.ok else f"public, max-age={remote_cutouts.PLACEHOLDER_MAX_AGE}"


# ----------------------------------------------------------------- keys and layout

COMPOSITE = "composite"
_TOKEN_RE = re.compile(r"^(\d{1,11})(?::(b\d{1,3}))?$")


def band_of(member: tuple) -> str:
    """A member is (galaxy, survey) for its composite, or (galaxy, survey, "b<N>") for band N."""
    return member[2] if len(member) > 2 else COMPOSITE


def member_key(galaxy, survey, size: int, band: str = COMPOSITE) -> str:
    """The content key of a member's thumbnail; "-" where it has none (a placeholder)."""
    return static_thumbs.content_key(survey, galaxy, size, band) or "-"


def member_token(member: tuple) -> str:
    """The member as the URL's ids= names it: "12" or "12:b0"."""
    band = band_of(member)
    return str(member[0].pk) if band == COMPOSITE else f"{member[0].pk}:{band}"


def atlas_digest(members: list[tuple], size: int) -> str:
    """``members``: [(galaxy, survey[, band]), ...] in page order.  A band's key names its band,
    and a composite member's text is what it was before bands, so no composite atlas moved."""
    text = f"atlas|{int(size)}|" + ";".join(f"{m[0].pk}:{member_key(m[0], m[1], size, band_of(m))}"
                                            for m in members)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of an atlas of n members."""
    columns = max(min(n, COLUMNS), 1)
    return columns, max((n + columns - 1) // columns, 1)


def _percent(index: int, count: int) -> str:
    # background-position p% puts the image's p% point on the cell's p% point: tile i of count
    # lines up at p = i / (count - 1).
    return "0%" if count <= 1 else f"{100 * index / (count - 1):.4f}".rstrip("0").rstrip(".") + "%"


def layout(members: list[tuple], size: int) -> Layout | None:
    """The atlas URL and each member's background-position; None for an empty page.  The fields
    static_thumbs.SURVEY_FIELDS / GALAXY_FIELDS must be loaded (no query here)."""
    if not members:
        return None
    if len(members) > MAX_MEMBERS:
        raise AtlasError(f"at most {MAX_MEMBERS} galaxies per atlas")
    columns, rows = grid_shape(len(members))
    ids = ",".join(member_token(m) for m in members)
    url = f"/thumbs/atlas/{atlas_digest(members, size)}.jpg?size={int(size)}&ids={ids}"
    positions = [f"{_percent(i % columns, columns)} {_percent(i // columns, rows)}" for i in range(len(members))]
    return Layout(url, int(size), columns, rows, positions)


def layout_for_ids(ids: list[int], size: int) -> Layout | None:
    """layout() of galaxies given by id, in that order (one query); for pages built from dicts."""
    return layout(members_of(list(ids)), size) if ids else None


def with_sprites(items: list[dict], size: int, id_key: str = "id") -> Layout | None:
    """Set item["sprite"] (its background-position) on each dict of a page and return the page's
    layout (one query).  Items past MAX_MEMBERS get no sprite: pages show them as single images."""
    sprites = layout_for_ids([item[id_key] for item in items[:MAX_MEMBERS]], size)
    for item, position in zip(items, sprites.positions if sprites else []):
        item["sprite"] = position
    return sprites


# ----------------------------------------------------------------- requests

def parse_request(ids_values: list[str], size_values: list[str]) -> tuple[list[tuple[int, str]], int]:
    """([(galaxy id, band), ...] in order, size) of an atlas request's ``ids`` and ``size``
    parameters (band "composite" for a plain id); AtlasError."""
    if len(set(size_values)) > 1:
        raise AtlasError("mixed sizes: an atlas holds thumbnails of one size")
    if len(size_values) != 1:
        raise AtlasError("size is required once")
    try:
        size = render.parse_size(size_values[0])
    except render.RenderError as exc:
        raise AtlasError(str(exc)) from None
    if size > MAX_SIZE:
        raise AtlasError(f"atlas cells are at most {MAX_SIZE} px; use single thumbnails for larger images")
    if len(ids_values) != 1 or not ids_values[0].strip():
        raise AtlasError("ids is required once: comma-separated galaxy ids (or id:bN for a band) in page order")
    text = ids_values[0]
    if len(text) > MAX_IDS_TEXT:
        raise AtlasError(f"at most {MAX_MEMBERS} galaxies per atlas")
    parts = text.split(",")
    if len(parts) > MAX_MEMBERS:
        raise AtlasError(f"at most {MAX_MEMBERS} galaxies per atlas ({len(parts)} given)")
    matches = [_TOKEN_RE.match(p) for p in parts]
    if not all(matches):
        raise AtlasError("ids must be comma-separated galaxy ids, or id:bN for band N of a galaxy")
    specs = [(int(m.group(1)), m.group(2) or COMPOSITE) for m in matches]
    if len(set(specs)) != len(specs):
        raise AtlasError("a member appears twice")
    return specs, size


def members_of(specs: list) -> list[tuple]:
    """[(galaxy, survey[, band]), ...] in the order of ``specs`` (galaxy ids, or (id, band) pairs),
    in one query; AtlasError for an unknown id or a band its survey does not have."""
    from webapp.catalog.models import Galaxy
    pairs = [s if isinstance(s, tuple) else (int(s), COMPOSITE) for s in specs]
    ids = list(dict.fromkeys(i for i, _ in pairs))
    rows = {g.pk: g for g in Galaxy.objects.filter(pk__in=ids).select_related("survey").only(
        *static_thumbs.GALAXY_FIELDS, "survey_id", *[f"survey__{f}" for f in static_thumbs.SURVEY_FIELDS],
        "survey__image_shape", "survey__bands")}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise AtlasError("unknown galaxy id" + ("s " if len(missing) > 1 else " ") + ", ".join(map(str, missing[:10])))
    out = []
    for i, band in pairs:
        galaxy = rows[i]
        if band == COMPOSITE:
            out.append((galaxy, galaxy.survey))
            continue
        if not render.has_local_store(galaxy.survey):
            raise AtlasError(f"galaxy {i}'s survey has no band images (remote cutouts are colour composites)")
        try:
            band = render.parse_band(galaxy.survey, band[1:])
        except render.RenderError as exc:
            raise AtlasError(f"galaxy {i}: {exc}") from None
        out.append((galaxy, galaxy.survey, band))
    return out


# ----------------------------------------------------------------- building

def cache_root() -> Path:
    return static_thumbs.cache_root() / CACHE_DIRNAME


def atlas_path(digest: str) -> Path:
    return cache_root() / digest[:2] / f"{digest}.jpg"


def _decode(data: bytes, size: int) -> Image.Image:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return img if img.size == (size, size) else img.resize((size, size), Image.Resampling.LANCZOS)


def member_tiles(members: list[tuple], size: int) -> list[tuple[Image.Image, bool]]:
    """(RGB size x size image, ok) per member: local stores read once per survey for the members
    without a thumbnail file (render.composite_tiles, in memory), remote cutouts fetched at most
    CUTOUT_CONCURRENCY at once (remote_cutouts' slots), placeholders where a member has no pixels
    or its fetch failed."""
    tiles: list = [None] * len(members)
    local: dict[int, list[int]] = {}
    remote: list[int] = []
    bands: dict[int, list[int]] = {}
    for i, member in enumerate(members):
        galaxy, survey = member[0], member[1]
        if band_of(member) != COMPOSITE:      # members_of() checked the band: a local store
            bands.setdefault(survey.pk, []).append(i)
        elif render.has_local_store(survey):
            local.setdefault(survey.pk, []).append(i)
        else:
            remote.append(i)
    for positions in bands.values():          # missing band files: one store read per survey
        survey = members[positions[0]][1]
        render.render_missing_variants(survey, [members[i][0].image_index for i in positions],
                                       {(band_of(members[i]), size) for i in positions})
        for i in positions:
            tiles[i] = (_band_tile(survey, members[i][0], band_of(members[i]), size), True)
    for positions in local.values():
        survey = members[positions[0]][1]
        images = render.composite_tiles(survey, [members[i][0].image_index for i in positions], size)
        for i in positions:
            tiles[i] = (images[int(members[i][0].image_index)], True)

    def one(i):
        galaxy, survey = members[i][0], members[i][1]
        thumb = render.galaxy_thumbnail(survey, galaxy, size)
        return i, (_decode(thumb.data, size), thumb.ok)

    if remote:
        with ThreadPoolExecutor(max_workers=min(int(settings.CUTOUT_CONCURRENCY), len(remote))) as pool:
            for i, tile in pool.map(one, remote):
                tiles[i] = tile
    return tiles


def _band_tile(survey, galaxy, band: str, size: int) -> Image.Image:
    """One band's thumbnail (render.py's cached file, rendered if missing: the labeling queue's
    pre-render job has usually made it) as an RGB tile."""
    path = render.thumbnail_file(survey, galaxy.image_index, size, band)
    with Image.open(path) as img:
        tile = img.convert("RGB")
    return tile if tile.size == (size, size) else tile.resize((size, size), Image.Resampling.LANCZOS)


def paste(tiles: list[Image.Image], size: int) -> Image.Image:
    columns, rows = grid_shape(len(tiles))
    canvas = Image.new("RGB", (columns * size, rows * size), (0, 0, 0))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % columns) * size, (i // columns) * size))
    return canvas


def encode(canvas: Image.Image) -> bytes:
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=ATLAS_JPEG_QUALITY)
    return buf.getvalue()


def build(members: list[tuple], size: int, digest: str) -> AtlasImage:
    """The atlas of ``members``: from the disk cache, else built (and cached when complete)."""
    path = atlas_path(digest)
    if path.exists():
        _touch(path)
        return AtlasImage(path, None, True)
    tiles = member_tiles(members, size)
    data = encode(paste([t for t, _ in tiles], size))
    if not all(ok for _, ok in tiles):
        return AtlasImage(None, data, False)
    try:
        write_atomic(path, data, durable=False)   # a cache: rebuilt if lost
    except OSError:   # a full or read-only disk: serve it uncached
        return AtlasImage(None, data, True)
    _sweep(len(data))
    return AtlasImage(path, data, True)


_sweep_lock = threading.Lock()
_written = {"bytes": 0, "swept": False}


def _touch(path: Path) -> None:
    """The LRU clock (remote_cutouts.evict sorts by mtime), refreshed at most every TOUCH_EVERY."""
    try:
        now = time.time()
        if now - path.stat().st_mtime > remote_cutouts.TOUCH_EVERY:
            os.utime(path, (now, now))
    except FileNotFoundError:
        pass


def _sweep(nbytes: int) -> None:
    cap = settings.ATLAS_CACHE_BYTES
    with _sweep_lock:
        _written["bytes"] += nbytes
        due = not _written["swept"] or _written["bytes"] >= max(cap // SWEEP_FRACTION, 1)
        if due:
            _written["bytes"], _written["swept"] = 0, True
    if due:
        remote_cutouts.evict(cap, root=cache_root())
