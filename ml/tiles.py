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
  tile (before the cap), points-<z>.npy structured (row, id, x, y, ra, dec) in priority order,
  pranks-<z>.npy (P,) int64 each stored point's rank in that order (TileReader.points_in_box
  merges tiles by it), pcum-<z>.npy (K+1,) prefix sums of ptotals (count_in_box); pyramids
  built before these existed have neither, and the map's /points endpoint falls back for them.

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
    rank = priority_rank(n, cfg.seed)
    by_rank = np.argsort(rank, kind="stable")
    z = 0
    while True:
        check_cancelled(progress)
        keys, offsets, totals, rows = point_level(xy, box, z, by_rank, cfg.points_per_tile)
        points = np.empty(len(rows), dtype=POINT_DTYPE)
        points["row"], points["id"] = rows, ids[rows]
        points["x"], points["y"] = xy[rows, 0], xy[rows, 1]
        points["ra"], points["dec"] = (radec[rows, 0], radec[rows, 1]) if radec is not None else (np.nan, np.nan)
        for name, arr in (("pkeys", keys), ("poffsets", offsets), ("ptotals", totals), ("points", points),
                          ("pranks", rank[rows]), ("pcum", np.concatenate([[0], np.cumsum(totals)]).astype(np.int64))):
            _save(directory / f"{name}-{z}.npy", arr)
        if (totals.max(initial=0) <= cfg.points_per_tile) or z >= cfg.max_point_level:
            return z
        z += 1


# ----------------------------------------------------------------- reading

BOX_BUDGET = 131_072   # stored points one points_in_box call may read (64 full tiles)


@dataclass
class BoxPoints:
    points: np.ndarray      # (P,) POINT_DTYPE, the lowest-ranked points in the box, in priority order
    total: int              # points in the box
    total_exact: bool       # False when scaled from capped tiles' samples
    complete: bool          # True when no tile read was capped: every point in the box is in `points`


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

    def points_in_box(self, bbox, need: int, budget: int = BOX_BUDGET) -> BoxPoints | None:
        """The ``need`` lowest-ranked points inside bbox (xmin, ymin, xmax, ymax), in priority order,
        read from point tiles; None for a pyramid without ranks (built before they were stored).

        Level by level from the top: the tiles that cover the box hold each tile's lowest-ranked
        points, so every point in the box ranked below T (the smallest last-stored rank among the
        capped tiles) is present; those are exact.  Deeper levels raise T; the walk stops when
        ``need`` points are exact, the level is complete (no capped tile), or the next level
        would read more than ``budget`` stored points (then ``BoxPoints.exact`` may be short of
        ``need``).  ``total``: points in the box, exact where tiles are fully inside or
        uncapped, else scaled from a capped tile's sample (``total_exact`` says which)."""
        if not all((self.directory / f"{name}-0.npy").exists() for name in ("pranks", "pcum")):
            return None
        best = None
        for z in range(self.manifest["point_levels"] + 1):
            found = self._box_level(z, bbox, budget, need)
            if found is None:           # this level would read more than the budget
                break
            best = found
            if len(found.points) >= need or found.complete:
                break
        if best is None:
            best = BoxPoints(np.empty(0, POINT_DTYPE), 0, True, False)
        if not best.total_exact:
            best.total, best.total_exact = self.count_in_box(bbox)
        return best

    def count_in_box(self, bbox) -> tuple[int, bool]:
        """(points inside bbox, exact?) from the deepest point level: tiles wholly inside are
        summed from a prefix sum of their totals (one range per tile row), the tiles on the
        box's edge are counted point by point.  O(tile rows + edge points), never O(N); exact
        unless the deepest level is capped (max_point_level reached)."""
        z = self.manifest["point_levels"]
        xmin, ymin, xmax, ymax = bbox
        x0, y0, side = self.box
        n = 1 << z
        s = side / n
        fx0, fx1 = (xmin - x0) / s, (xmax - x0) / s
        fy0, fy1 = (ymin - y0) / s, (ymax - y0) / s
        tx0, tx1 = int(np.clip(np.floor(fx0), 0, n - 1)), int(np.clip(np.floor(fx1), 0, n - 1))
        ty0, ty1 = int(np.clip(np.floor(fy0), 0, n - 1)), int(np.clip(np.floor(fy1), 0, n - 1))
        keys = self._array(f"pkeys-{z}")
        cum = self._cumulative_totals(z)
        total, exact = 0, True

        def present(row: int, a: int, b: int) -> tuple[int, int]:   # tiles a..b of a row: index range
            return int(np.searchsorted(keys, row + a)), int(np.searchsorted(keys, row + b, side="right"))

        for ty in range(ty0, ty1 + 1):
            row = ty * n
            if ty in (ty0, ty1) or tx1 - tx0 < 2:
                edges = range(*present(row, tx0, tx1))          # every tile of this row is on the edge
            else:
                lo, hi = present(row, tx0 + 1, tx1 - 1)          # wholly inside: summed
                total += int(cum[hi] - cum[lo])
                edges = [*range(*present(row, tx0, tx0)), *range(*present(row, tx1, tx1))]
            for i in edges:
                count, complete = self._count_tile(z, i, bbox)
                total += count
                exact &= complete
        return total, exact

    def _count_tile(self, z: int, i: int, bbox) -> tuple[int, bool]:
        xmin, ymin, xmax, ymax = bbox
        a, b = (int(v) for v in self._array(f"poffsets-{z}")[i:i + 2])
        pts = np.asarray(self._array(f"points-{z}")[a:b])
        inside = int(((pts["x"] >= xmin) & (pts["x"] <= xmax) & (pts["y"] >= ymin) & (pts["y"] <= ymax)).sum())
        tile_total = int(self._array(f"ptotals-{z}")[i])
        if tile_total == b - a:
            return inside, True
        return int(round(tile_total * inside / max(b - a, 1))), False

    def _cumulative_totals(self, z: int) -> np.ndarray:
        """(K+1,) prefix sums of a level's tile totals, written with the tiles (pcum-<z>.npy,
        memory-mapped)."""
        return self._array(f"pcum-{z}")

    def _box_level(self, z: int, bbox, budget: int, need: int) -> "BoxPoints | None":
        xmin, ymin, xmax, ymax = bbox
        x0, y0, side = self.box
        n = 1 << z
        s = side / n
        tx0, tx1 = (int(np.clip(np.floor((v - x0) / s), 0, n - 1)) for v in (xmin, xmax))
        ty0, ty1 = (int(np.clip(np.floor((v - y0) / s), 0, n - 1)) for v in (ymin, ymax))
        keys, offsets = self._array(f"pkeys-{z}"), self._array(f"poffsets-{z}")
        rows = np.arange(ty0, ty1 + 1, dtype=np.int64) * n
        lo = np.searchsorted(keys, rows + tx0)
        hi = np.searchsorted(keys, rows + tx1, side="right")
        tiles = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist())]) if len(rows) else []
        tiles = np.asarray(tiles, dtype=np.int64)
        starts, stops = np.asarray(offsets[tiles]), np.asarray(offsets[tiles + 1])
        if int((stops - starts).sum()) > budget:
            return None
        totals = np.asarray(self._array(f"ptotals-{z}")[tiles])
        points, ranks = self._array(f"points-{z}"), self._array(f"pranks-{z}")
        best_pts, best_rk = np.empty(0, POINT_DTYPE), np.empty(0, np.int64)
        threshold, total, total_exact = np.iinfo(np.int64).max, 0.0, True
        for tile, a, b, tile_total in zip(tiles.tolist(), starts.tolist(), stops.tolist(), totals.tolist()):
            pts, rk = np.asarray(points[a:b]), np.asarray(ranks[a:b])      # one tile at a time
            inside = (pts["x"] >= xmin) & (pts["x"] <= xmax) & (pts["y"] >= ymin) & (pts["y"] <= ymax)
            capped = tile_total > b - a
            if capped:
                threshold = min(threshold, int(rk[-1]))
            bx0, by0, bx1, by1 = tile_bbox(self.box, z, tile % n, tile // n)
            if bx0 >= xmin and bx1 <= xmax and by0 >= ymin and by1 <= ymax:
                total += tile_total                         # the whole tile is in the box
            elif capped:
                total += tile_total * inside.mean() if len(pts) else 0.0   # scaled from its sample
                total_exact = False
            else:
                total += int(inside.sum())
            # keep only the `need` lowest-ranked points seen so far: memory O(need + one tile)
            best_pts, best_rk = np.concatenate([best_pts, pts[inside]]), np.concatenate([best_rk, rk[inside]])
            if len(best_rk) > need:
                keep = np.argpartition(best_rk, need - 1)[:need]
                best_pts, best_rk = best_pts[keep], best_rk[keep]
        order = np.argsort(best_rk, kind="stable")
        exact = order[best_rk[order] <= threshold]
        return BoxPoints(best_pts[exact], int(round(total)), total_exact, threshold == np.iinfo(np.int64).max)

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
