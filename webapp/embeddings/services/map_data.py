"""What the map page fetches: points in a view, density images, mosaics, colour values.

Scaling: a map of N points is served as (a) every point when N <= POINT_BUDGET, or (b) a
density image of the view plus at most `limit` points in the view.  Points in a view are
returned in a fixed random priority order (one permutation per map), so a capped view is
a uniform sample that stays stable while panning, and zooming in reveals all of them.
Selecting the rows of a view is one vectorised mask over the (N, 2) coordinates
(~3 ms at 1e6).

Binary format (application/octet-stream): the arrays named in the X-Fields header
("name:dtype,..." with numpy little-endian dtypes f4/i4/u4/f8), each X-Count long,
concatenated in that order; 8-byte types come first so every array is aligned for a
JavaScript typed-array view.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from django.conf import settings

from ml.projection import density_grid
from webapp.embeddings.models import LatentMap
from webapp.embeddings.services import colours
from webapp.embeddings.services.maps import load_coords
from webapp.embeddings.services.sky import sky_index
from webapp.embeddings.services.vectors import load_embedding_set

log = logging.getLogger(__name__)
POINT_BUDGET = 150_000     # maps up to this size send every point at once (~4 MB binary)
VIEW_LIMIT = 40_000        # larger maps: at most this many points per view, over a density image
MAX_LIMIT = 200_000        # largest `limit` a client may ask for
MAX_BINS = 1024            # density image side, pixels
LAYER_TTL = 60.0           # seconds provider layers are cached per process (scores change rarely)
FIELDS = ("row", "id", "x", "y", "ra", "dec", "c")


class MapDataError(ValueError):
    """Bad query parameters (HTTP 400)."""


# ----------------------------------------------------------------- views of a map

@lru_cache(maxsize=8)
def _priority(n: int, seed: int) -> np.ndarray:
    """(n,) int32 rank of each row in a fixed random order."""
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    return rank


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """'x0,y0,x1,y1' (any corner order) -> (xmin, ymin, xmax, ymax); None when absent."""
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise MapDataError(f"bbox must be four numbers x0,y0,x1,y1; got {text!r}") from None
    if not all(np.isfinite(v) for v in (x0, y0, x1, y1)) or x0 == x1 or y0 == y1:
        raise MapDataError(f"bbox {text!r} must be finite and have non-zero width and height")
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def parse_int(value, name: str, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MapDataError(f"{name} must be an integer, got {value!r}") from None
    if not lo <= number <= hi:
        raise MapDataError(f"{name} must be between {lo} and {hi}, got {number}")
    return number


def rows_in_view(lm: LatentMap, bbox=None, limit: int | None = None, offset: int = 0) -> tuple[np.ndarray, int]:
    """(rows, total in view): rows of points inside bbox in priority order, paged by offset/limit.

    Masks every coordinate: the small-map path.  A tiled map's view comes from its point tiles
    (map_tiles.view_points / rows_in_view_from_tiles), which callers try first."""
    coords = load_coords(lm)
    if bbox is None:
        inside = np.arange(len(coords))
    else:
        xmin, ymin, xmax, ymax = bbox
        x, y = coords[:, 0], coords[:, 1]
        inside = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    total = len(inside)
    if limit is not None and (offset or total > limit):
        order = np.argsort(_priority(len(coords), lm.pk)[inside], kind="stable")
        inside = np.sort(inside[order[offset:offset + limit]])
    return inside.astype(np.int64), total


def map_bounds(lm: LatentMap) -> list[float]:
    coords = load_coords(lm)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    return [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


# ----------------------------------------------------------------- point arrays

def point_arrays(lm: LatentMap, rows: np.ndarray, fields, layer_key: str | None) -> dict[str, np.ndarray]:
    """The requested fields for these rows, as typed arrays."""
    es = lm.embedding_set
    out: dict[str, np.ndarray] = {}
    ids, _, _ = load_embedding_set(es)
    for name in fields:
        if name == "row":
            out["row"] = rows.astype(np.uint32)
        elif name == "id":
            gids = ids[rows]
            out["id"] = gids.astype(np.int32) if (len(gids) == 0 or gids.max() < 2**31) else gids.astype(np.float64)
        elif name in ("x", "y"):
            out[name] = load_coords(lm)[rows, 0 if name == "x" else 1].astype(np.float32)
        elif name in ("ra", "dec"):
            sky = sky_index(es)
            out[name] = (sky.ra if name == "ra" else sky.dec)[rows].astype(np.float32)
        elif name == "c":
            out["c"] = layer_values(es, layer_key).codes[rows] if layer_key else np.full(len(rows), np.nan, np.float32)
        else:
            raise MapDataError(f"unknown field {name!r}; fields are {', '.join(FIELDS)}")
    return out


def parse_fields(text: str | None) -> list[str]:
    fields = [f.strip() for f in (text or ",".join(FIELDS)).split(",") if f.strip()]
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise MapDataError(f"unknown field(s) {unknown}; fields are {', '.join(FIELDS)}")
    return list(dict.fromkeys(fields))


def pack_binary(arrays: dict[str, np.ndarray]) -> tuple[bytes, str]:
    """(body, X-Fields header value); 8-byte arrays first so typed-array views are aligned."""
    names = sorted(arrays, key=lambda k: -arrays[k].dtype.itemsize)
    spec = ",".join(f"{k}:{arrays[k].dtype.newbyteorder('<').str[1:]}" for k in names)
    buf = io.BytesIO()
    for k in names:
        buf.write(np.ascontiguousarray(arrays[k], dtype=arrays[k].dtype.newbyteorder("<")).tobytes())
    return buf.getvalue(), spec


def json_arrays(arrays: dict[str, np.ndarray]) -> dict[str, list]:
    """Arrays as JSON lists; NaN (missing colour or position) becomes null."""
    out = {}
    for k, a in arrays.items():
        if a.dtype.kind == "f":
            out[k] = [None if not np.isfinite(v) else round(float(v), 6) for v in a]
        else:
            out[k] = a.tolist()
    return out


# ----------------------------------------------------------------- density

def density(lm: LatentMap, bbox, bins: int, space: str = "map") -> tuple[np.ndarray, tuple]:
    """(counts (ny, nx) float32, (xmin, ymin, xmax, ymax)) of points in bbox (whole map when None)."""
    if space == "map":
        xy = load_coords(lm)
    elif space == "sky":
        sky = sky_index(lm.embedding_set)
        xy = np.stack([sky.ra[sky.rows], sky.dec[sky.rows]], axis=1)
    else:
        raise MapDataError(f"space must be 'map' or 'sky', got {space!r}")
    if bbox is None:
        if len(xy) == 0:
            return np.zeros((bins, bins), np.float32), (0.0, 0.0, 1.0, 1.0)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        pad = np.maximum((hi - lo) * 0.02, 1e-6)
        bbox = (float(lo[0] - pad[0]), float(lo[1] - pad[1]), float(hi[0] + pad[0]), float(hi[1] + pad[1]))
    xmin, ymin, xmax, ymax = bbox
    aspect = (ymax - ymin) / (xmax - xmin)
    nx, ny = (bins, max(8, int(round(bins * aspect)))) if aspect <= 1 else (max(8, int(round(bins / aspect))), bins)
    counts = density_grid(xy, bins=(nx, ny), extent=(xmin, xmax, ymin, ymax))  # (ny, nx)
    return counts, (xmin, ymin, xmax, ymax)


def shade(counts: np.ndarray, palette: list[str] | None = None) -> np.ndarray:
    """(ny, nx) counts -> (ny, nx, 4) uint8 RGBA, log-scaled, empty pixels transparent, north up."""
    from bokeh.palettes import Magma256

    palette = palette or Magma256[40:]
    lut = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in palette], dtype=np.uint8)  # (P, 3)
    out = np.zeros(counts.shape + (4,), dtype=np.uint8)
    filled = counts > 0
    if filled.any():
        level = np.log1p(counts[filled])
        level = (level / level.max() * (len(lut) - 1)).astype(int)
        out[filled, :3] = lut[level]
        out[filled, 3] = 235
    return out[::-1]  # row 0 of an image is the top; counts row 0 is the lowest y


# ----------------------------------------------------------------- colour layers

@dataclass
class LayerValues:
    key: str
    label: str
    kind: str                 # numeric | categorical
    group: str
    unit: str
    codes: np.ndarray         # (N,) float32: value, or category index; NaN = missing
    categories: list[str]     # categorical: names by code; numeric: []
    counts: list[int]         # categorical: galaxies per category
    low: float
    high: float


_layer_lock = threading.Lock()
# (set id, checksum) -> (time loaded, layers, {key: LayerValues encoded so far})
_layer_cache: dict[tuple, tuple[float, list, dict]] = {}
MAX_CATEGORIES = 20  # more distinct values than this: the rarest are merged into "other"


def _cached(es) -> tuple[float, list, dict]:
    key = (str(settings.DATA_DIR), es.pk, es.checksum)
    hit = _layer_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < LAYER_TTL:
        return hit
    layers: list[colours.ColourLayer] = []
    for provider in colours.colour_providers():
        try:
            layers.extend(provider(es) or [])
        except Exception:  # another app's layer failing must not take the map down with it
            log.exception("colour provider %s failed for embedding set %s", getattr(provider, "__name__", provider), es.pk)
    entry = (time.monotonic(), layers, {})
    with _layer_lock:
        _layer_cache[key] = entry
    return entry


def provider_layers(es) -> list[colours.ColourLayer]:
    """Every registered provider's layers for ``es`` (cached LAYER_TTL s per process)."""
    return _cached(es)[1]


def forget_cached_layers() -> None:
    with _layer_lock:
        _layer_cache.clear()


def layer_menu(es) -> list[dict]:
    """[{key, label, kind, group, unit}] for the colour menu (lazy values are not computed)."""
    return [{"key": layer.key, "label": layer.label, "kind": layer.kind, "group": layer.group,
             "unit": layer.unit} for layer in provider_layers(es)]


def layer_values(es, key: str) -> "LayerValues":
    """The layer's values encoded for colouring (categories -> codes), cached with the layers."""
    _, layers, encoded = _cached(es)
    if key in encoded:
        return encoded[key]
    layer = next((layer for layer in layers if layer.key == key), None)
    if layer is None:
        raise MapDataError(f"unknown colour layer {key!r}")
    values = colours.resolve_values(layer)
    if len(values) != es.n:
        raise MapDataError(f"colour layer {key!r} has {len(values)} values for {es.n} galaxies")
    encoded[key] = _encode_categorical(layer, values) if layer.kind == "categorical" else _encode_numeric(layer, values)
    return encoded[key]


def _encode_numeric(layer, values) -> "LayerValues":
    codes = np.asarray(values, dtype=np.float32)
    finite = codes[np.isfinite(codes)]
    low, high = (float(np.percentile(finite, 2)), float(np.percentile(finite, 98))) if len(finite) else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return LayerValues(layer.key, layer.label, "numeric", layer.group, layer.unit, codes, [], [], low, high)


def _encode_categorical(layer, values) -> LayerValues:
    names, inverse, counts = np.unique(np.array([("" if v is None else str(v)) for v in values], dtype=object),
                                       return_inverse=True, return_counts=True)
    order = [i for i in np.argsort(-counts, kind="stable") if names[i] != ""]
    keep, rest = order[:MAX_CATEGORIES], order[MAX_CATEGORIES:]
    code_of = np.full(len(names), np.nan, dtype=np.float32)
    for code, i in enumerate(keep):
        code_of[i] = code
    categories = [str(names[i]) for i in keep]
    totals = [int(counts[i]) for i in keep]
    if rest:
        code_of[rest] = len(categories)
        categories.append("other")
        totals.append(int(sum(counts[i] for i in rest)))
    codes = code_of[inverse].astype(np.float32)
    return LayerValues(layer.key, layer.label, "categorical", layer.group, layer.unit, codes, categories, totals,
                       -0.5, len(categories) - 0.5)
