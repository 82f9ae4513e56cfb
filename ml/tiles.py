"""Multi-resolution map tiles: (N, 2) map coordinates -> a pyramid of files read O(tile).

Geometry.  The tile world is a square box around every point (padded 2 %, so no point sits on
its edge).  Level z has 2^z x 2^z tiles; tile (x, y) of level z covers
[x0 + x*s, x0 + (x+1)*s) x [y0 + y*s, y0 + (y+1)*s) with s = side / 2^z; y counts up from the
bottom (TMS order, like the map's own y axis).  A tile key is y * 2^z + x.

Two kinds of tile, each level one set of .npy files (memory-mapped by readers):
- density (levels 0..density_levels): a (T, T) uint32 count image per tile, computed once at
  the deepest density level with datashader (Canvas.points, count) and summed 2x2 for each
  coarser level, so every level adds up to the same N.  Colour layers get the same pyramid:
  numeric layers the mean value per pixel (datashader sum and count), categorical layers the
  most common category per pixel.  Only non-empty tiles are stored:
  dkeys-<z>.npy (K,) int64 sorted, density-<z>.npy (K, T, T), layer-<i>-<z>.npy (K, T, T).
- points (levels 0..): each tile keeps at most points_per_tile points, the ones of lowest
  rank in one fixed random priority order, so a tile's points are a uniform sample of it and
  a deeper tile's points are a superset of its parent's points inside it.  Levels stop at the
  first one where no tile is capped (every point present) or at max_point_level.
  pkeys-<z>.npy (K,) int64 sorted, poffsets-<z>.npy (K+1,), ptotals-<z>.npy (K,) points in the
  tile (before the cap), points-<z>.npy structured (row, id, x, y, ra, dec) in priority order.

A reader finds a tile by searchsorted on the sorted keys of its level (O(log K) pages) and
slices one tile out of memory-mapped arrays: no request reads an array of size N.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ml.atomic import write_atomic
from ml.progress import Progress, check_cancelled

POINT_DTYPE = np.dtype([("row", "<i8"), ("id", "<i8"), ("x", "<f4"), ("y", "<f4"), ("ra", "<f4"), ("dec", "<f4")])
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class TileConfig:
    tile_size: int = 256           # pixels per density tile side (the usual web-map tile)
    density_levels: int = 4        # deepest density level: 256 * 2^4 = 4096 px across the whole map
    points_per_tile: int = 2048    # most points one point tile sends (a view shows ~4-9 tiles)
    max_point_level: int = 16      # point levels stop here even if a tile is still capped (duplicates)
    seed: int = 0                  # the fixed random priority order of the points
    pad: float = 0.02              # world box = points' bounding square grown by this fraction


class TileError(ValueError):
    """A tile address outside the pyramid (HTTP 400)."""


@dataclass
class LayerInput:
    """A colour layer to aggregate: numeric values (NaN = missing) or categorical codes (NaN = missing)."""
    key: str
    kind: str                      # "numeric" | "categorical"
    codes: np.ndarray              # (N,) float32
    n_categories: int = 0          # categorical: codes are 0..n_categories-1


# ----------------------------------------------------------------- geometry

def world_box(xy: np.ndarray, pad: float = 0.02) -> tuple[float, float, float]:
    """(x0, y0, side) of the padded bounding square of (N, 2) points."""
    if len(xy) == 0:
        return -1.0, -1.0, 2.0
    lo, hi = xy.min(axis=0).astype(np.float64), xy.max(axis=0).astype(np.float64)
    side = float(max(hi - lo)) * (1 + 2 * pad) or 1.0
    centre = (lo + hi) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def tile_xy(xy: np.ndarray, box: tuple[float, float, float], z: int) -> tuple[np.ndarray, np.ndarray]:
    """(tx, ty) int64 tile indices of (N, 2) points at level z."""
    x0, y0, side = box
    n = 1 << z
    scale = n / side
    tx = np.clip(np.floor((xy[:, 0].astype(np.float64) - x0) * scale), 0, n - 1).astype(np.int64)
    ty = np.clip(np.floor((xy[:, 1].astype(np.float64) - y0) * scale), 0, n - 1).astype(np.int64)
    return tx, ty


def tile_bbox(box: tuple[float, float, float], z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) in map coordinates of tile (z, x, y)."""
    x0, y0, side = box
    s = side / (1 << z)
    return x0 + x * s, y0 + y * s, x0 + (x + 1) * s, y0 + (y + 1) * s


def check_address(z, x, y, max_z: int) -> tuple[int, int, int]:
    """Integers z, x, y of a tile inside the pyramid, or TileError saying what is wrong."""
    try:
        z, x, y = int(str(z)), int(str(x)), int(str(y))
    except ValueError:
        raise TileError(f"tile address must be three integers z/x/y, got {z}/{x}/{y}") from None
    if not 0 <= z <= max_z:
        raise TileError(f"zoom level z={z} is outside this map's levels 0..{max_z}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileError(f"tile x={x}, y={y} is outside level {z}, whose tiles run 0..{n - 1}")
    return z, x, y


# ----------------------------------------------------------------- density pyramid

def _canvas_agg(xy: np.ndarray, box, width: int, values: np.ndarray | None = None, how: str = "count") -> np.ndarray:
    """(width, width) float64 aggregate with datashader; row 0 is the lowest y."""
    import datashader as ds
    import pandas as pd

    x0, y0, side = box
    frame = {"x": xy[:, 0], "y": xy[:, 1]}
    if values is not None:
        frame["v"] = values
    df = pd.DataFrame(frame)
    canvas = ds.Canvas(plot_width=width, plot_height=width, x_range=(x0, x0 + side), y_range=(y0, y0 + side))
    agg = ds.count() if how == "count" else ds.count("v") if how == "count_v" else ds.sum("v")
    out = canvas.points(df, "x", "y", agg=agg).values
    return np.nan_to_num(np.asarray(out, dtype=np.float64))


def _coarsen(grid: np.ndarray) -> np.ndarray:
    """(H, W) -> (H/2, W/2) sums of 2x2 blocks."""
    h, w = grid.shape
    return grid.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))


def pyramid(deepest: np.ndarray, levels: int) -> list[np.ndarray]:
    """[level 0, ..., level `levels`] grids from the deepest one by 2x2 sums."""
    out = [deepest]
    for _ in range(levels):
        out.append(_coarsen(out[-1]))
    return out[::-1]


def split_tiles(grid: np.ndarray, z: int, t: int) -> np.ndarray:
    """(2^z * t, 2^z * t) grid -> (4^z, t, t) tiles in key order (key = y * 2^z + x)."""
    n = 1 << z
    return grid.reshape(n, t, n, t).transpose(0, 2, 1, 3).reshape(n * n, t, t)


# ----------------------------------------------------------------- point levels

def priority_rank(n: int, seed: int) -> np.ndarray:
    """(n,) rank of each row in one fixed random order (0 = shown first)."""
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank


def point_level(xy: np.ndarray, box, z: int, by_rank: np.ndarray, cap: int):
    """(keys (K,), offsets (K+1,), totals (K,), rows (P,)) of level z: per tile the `cap` rows of lowest
    rank, tiles in key order and rows in rank order inside each tile.  by_rank = rows sorted by rank."""
    tx, ty = tile_xy(xy, box, z)
    key = ty * (1 << z) + tx                                  # (N,)
    order = by_rank[np.argsort(key[by_rank], kind="stable")]  # by key, then by rank
    sorted_keys = key[order]
    keys, starts, totals = np.unique(sorted_keys, return_index=True, return_counts=True)
    within = np.arange(len(order)) - np.repeat(starts, totals)
    keep = within < cap
    kept = np.minimum(totals, cap)
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    return keys.astype(np.int64), offsets, totals.astype(np.int64), order[keep]


# ----------------------------------------------------------------- building

def _save(path: Path, array: np.ndarray) -> None:
    """Plain np.save: the caller builds into a fresh directory and publishes it whole."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def build_tiles(directory: str | Path, xy: np.ndarray, ids: np.ndarray, radec: np.ndarray | None,
                layers: list[LayerInput] = (), cfg: TileConfig | None = None,
                progress: Progress | None = None, extra: dict | None = None) -> dict:
    """Write the whole pyramid into `directory` (which must be new and empty); returns the manifest.

    xy (N, 2) map coordinates, ids (N,) galaxy ids, radec (N, 2) degrees or None.  The manifest
    (manifest.json, written last) lists levels, the world box, layer kinds and legends from `extra`.
    """
    cfg = cfg or TileConfig()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    xy = np.asarray(xy, dtype=np.float32)
    n, t = len(xy), cfg.tile_size
    box = world_box(xy, cfg.pad)
    say = progress or (lambda d, tot, m="": None)
    steps = 2 + len(layers) + 2
    say(0, steps, f"density tiles of {n:,} points")
    width = t << cfg.density_levels
    counts = pyramid(_canvas_agg(xy, box, width), cfg.density_levels)
    dkeys, peaks = [], [int(grid.max(initial=0)) for grid in counts]  # brightest pixel per level
    for z, grid in enumerate(counts):
        tiles = split_tiles(grid, z, t)
        keys = np.flatnonzero(tiles.sum(axis=(1, 2)) > 0).astype(np.int64)
        _save(directory / f"dkeys-{z}.npy", keys)
        _save(directory / f"density-{z}.npy", tiles[keys].astype(np.uint32))
        dkeys.append(keys)
    del counts
    layer_meta = []
    for i, layer in enumerate(layers):
        check_cancelled(progress)
        say(1 + i, steps, f"colour layer {layer.key}")
        levels = _layer_pyramid(xy, box, width, layer, cfg)
        for z, grid in enumerate(levels):
            tiles = split_tiles(grid, z, t)[dkeys[z]]
            _save(directory / f"layer-{i}-{z}.npy", tiles)
        _save(directory / f"column-{i}.npy", np.asarray(layer.codes, dtype=np.float32))
        layer_meta.append({"key": layer.key, "kind": layer.kind, "index": i, "n_categories": layer.n_categories})
    say(1 + len(layers), steps, "point tiles")
    point_levels = _write_point_levels(directory, xy, np.asarray(ids, dtype=np.int64), radec, box, cfg, progress)
    manifest = {"format": FORMAT_VERSION, "n": n, "box": list(box), "tile_size": t, "peaks": peaks,
                "density_levels": cfg.density_levels, "point_levels": point_levels,
                "bounds": _bounds(xy), "layers": layer_meta, "config": asdict(cfg), **(extra or {})}
    write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1))
    say(steps, steps, "tiles written")
    return manifest


def _bounds(xy: np.ndarray) -> list[float]:
    if not len(xy):
        return [0.0, 0.0, 1.0, 1.0]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]


def _layer_pyramid(xy, box, width: int, layer: LayerInput, cfg: TileConfig) -> list[np.ndarray]:
    codes = np.asarray(layer.codes, dtype=np.float32)
    if layer.kind == "numeric":
        finite = np.isfinite(codes)
        sums = pyramid(_canvas_agg(xy[finite], box, width, codes[finite], "sum"), cfg.density_levels)
        counts = pyramid(_canvas_agg(xy[finite], box, width), cfg.density_levels)
        with np.errstate(invalid="ignore", divide="ignore"):
            return [np.where(c > 0, s / np.maximum(c, 1), np.nan).astype(np.float32) for s, c in zip(sums, counts)]
    # categorical: the most common category per pixel (-1: no galaxy with a value there)
    best = best_count = None
    for k in range(layer.n_categories):
        mask = codes == k
        if not mask.any():
            continue
        levels = pyramid(_canvas_agg(xy[mask], box, width), cfg.density_levels)
        if best is None:
            best = [np.full(g.shape, -1, np.int8) for g in levels]
            best_count = [np.zeros(g.shape) for g in levels]
        for z, g in enumerate(levels):
            better = g > best_count[z]
            best[z][better], best_count[z][better] = k, g[better]
    if best is None:
        return [np.full((cfg.tile_size << z,) * 2, -1, np.int8) for z in range(cfg.density_levels + 1)]
    return best


def _write_point_levels(directory: Path, xy, ids, radec, box, cfg: TileConfig, progress) -> int:
    n = len(xy)
    by_rank = np.argsort(priority_rank(n, cfg.seed), kind="stable")
    z = 0
    while True:
        check_cancelled(progress)
        keys, offsets, totals, rows = point_level(xy, box, z, by_rank, cfg.points_per_tile)
        points = np.empty(len(rows), dtype=POINT_DTYPE)
        points["row"], points["id"] = rows, ids[rows]
        points["x"], points["y"] = xy[rows, 0], xy[rows, 1]
        points["ra"], points["dec"] = (radec[rows, 0], radec[rows, 1]) if radec is not None else (np.nan, np.nan)
        for name, arr in (("pkeys", keys), ("poffsets", offsets), ("ptotals", totals), ("points", points)):
            _save(directory / f"{name}-{z}.npy", arr)
        if (totals.max(initial=0) <= cfg.points_per_tile) or z >= cfg.max_point_level:
            return z
        z += 1


# ----------------------------------------------------------------- reading

class TileReader:
    """Reads tiles of one built pyramid; every array is memory-mapped and sliced per tile."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / MANIFEST).read_text())
        self.box = tuple(self.manifest["box"])
        self._arrays: dict[str, np.ndarray] = {}

    def _array(self, name: str) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = np.load(self.directory / f"{name}.npy", mmap_mode="r")
        return arr

    @staticmethod
    def _find(keys: np.ndarray, key: int) -> int | None:
        i = int(np.searchsorted(keys, key))
        return i if i < len(keys) and int(keys[i]) == key else None

    def layer_index(self, key: str) -> dict | None:
        return next((m for m in self.manifest["layers"] if m["key"] == key), None)

    def density_tile(self, z, x, y, layer: str | None = None) -> np.ndarray | None:
        """(T, T) counts (layer None) or the layer's aggregate, row 0 lowest y; None when the tile is empty."""
        z, x, y = check_address(z, x, y, self.manifest["density_levels"])
        i = self._find(self._array(f"dkeys-{z}"), y * (1 << z) + x)
        if i is None:
            return None
        if layer is None:
            return np.array(self._array(f"density-{z}")[i])
        meta = self.layer_index(layer)
        if meta is None:
            raise TileError(f"colour layer {layer!r} has no tiles; tiled layers: "
                            f"{', '.join(m['key'] for m in self.manifest['layers']) or 'none'}")
        return np.array(self._array(f"layer-{meta['index']}-{z}")[i])

    def point_tile(self, z, x, y) -> tuple[np.ndarray, int]:
        """(points (P,) POINT_DTYPE in priority order, points in the tile before the cap)."""
        z, x, y = check_address(z, x, y, self.manifest["point_levels"])
        i = self._find(self._array(f"pkeys-{z}"), y * (1 << z) + x)
        if i is None:
            return np.empty(0, POINT_DTYPE), 0
        a, b = (int(v) for v in self._array(f"poffsets-{z}")[i:i + 2])
        return np.array(self._array(f"points-{z}")[a:b]), int(self._array(f"ptotals-{z}")[i])

    def column(self, key: str, rows: np.ndarray) -> np.ndarray | None:
        """The layer's per-galaxy values snapshotted at build time, for these rows (memory-mapped gather)."""
        meta = self.layer_index(key)
        if meta is None:
            return None
        return np.asarray(self._array(f"column-{meta['index']}")[np.asarray(rows, dtype=np.int64)], dtype=np.float32)


def zoom_for(box_side: float, view_width: float, max_z: int) -> int:
    """The level whose tiles are about a quarter of the view wide (~4-5 tiles across; map.js does the same)."""
    if view_width <= 0:
        return max_z
    return int(min(max_z, max(0, math.floor(math.log2(box_side / view_width)) + 2)))


ProgressFn = Callable[[float, float, str], None]
