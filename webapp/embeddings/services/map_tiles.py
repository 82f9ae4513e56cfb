"""Map tiles: the `map_tiles` job builds a map's tile pyramid (ml/tiles.py) and its HEALPix sky
density (ml/healpix_density.py); requests then read one tile, never the N rows.

Maps with more than settings.MAP_TILE_THRESHOLD galaxies are served only this way (the UMAP
job queues this job when it finishes); smaller maps keep sending every point at once.

Files: <set dir>/map-<id>-tiles-<version>/ (manifest.json written last, sky/ for HEALPix), built
under a .partial name and renamed whole; then LatentMap.params["tiles"] = {"version", "dir"} is
flipped to it and older versions are deleted.  Tile URLs carry the version, so a tile never
changes under its URL (immutable caching) and a rebuilt pyramid gets new URLs.

Colour layers are snapshotted at build time (per-galaxy columns + per-pixel aggregates, with
their legends); a layer that appears later is served by the point tiles as "no value" until the
tiles are rebuilt.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from ml import healpix_density
from ml.tiles import POINT_DTYPE, LayerInput, TileConfig, TileReader, build_tiles
from webapp.embeddings.models import ArtifactStatus, LatentMap

SKY_MAX_ORDER = 10          # deepest HEALPix order precomputed (nside 1024, cells ~3.4 arcmin)


class ViewTooDeep(ValueError):
    """A page of a tiled map's view deeper than its tiles answer within their read budget (HTTP 400)."""


class TilesNotReady(LookupError):
    """The map has no tiles (yet); HTTP 404."""


def tiled(lm: LatentMap) -> bool:
    """Whether this map is served by tiles (its size is above the threshold)."""
    return (lm.n or 0) > settings.MAP_TILE_THRESHOLD


def tiles_info(lm: LatentMap) -> dict | None:
    return (lm.params or {}).get("tiles")


def _abs(relative: str) -> Path:
    return Path(settings.DATA_DIR) / relative


@lru_cache(maxsize=8)
def _reader(path: str) -> TileReader:
    return TileReader(path)


def reader(lm: LatentMap, version: str | None = None) -> TileReader:
    """The map's current tile reader (cached per process); TilesNotReady when none, or when
    `version` names a pyramid that has been replaced."""
    info = tiles_info(lm)
    if not info:
        raise TilesNotReady(f"map {lm.pk} has no tiles yet; a map_tiles job builds them")
    if version is not None and version != info["version"]:
        raise TilesNotReady(f"tiles {version!r} of map {lm.pk} were replaced by {info['version']!r}")
    return _reader(str(_abs(info["dir"])))


# ----------------------------------------------------------------- the job

def tile_config(overrides: dict | None) -> TileConfig:
    names = {f.name for f in dataclasses.fields(TileConfig)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise ValueError(f"unknown tile option(s) {sorted(unknown)}; known: {sorted(names)}")
    return dataclasses.replace(TileConfig(), **(overrides or {}))


def _layer_inputs(es, progress) -> tuple[list[LayerInput], dict]:
    """Every provider layer encoded (a failing layer is skipped, not fatal), and their legends."""
    import logging

    from webapp.embeddings.services import map_data

    inputs, legends = [], {}
    for layer in map_data.provider_layers(es):
        try:
            v = map_data.layer_values(es, layer.key)
        except Exception:
            logging.getLogger(__name__).warning("layer %s skipped in tiles of set %s", layer.key, es.pk, exc_info=True)
            continue
        inputs.append(LayerInput(v.key, v.kind, v.codes, len(v.categories)))
        legends[v.key] = {"key": v.key, "label": v.label, "kind": v.kind, "group": v.group, "unit": v.unit,
                          "categories": v.categories, "counts": v.counts, "low": v.low, "high": v.high,
                          "missing": int(len(v.codes) - np.isfinite(v.codes).sum())}
    return inputs, legends


def build_map_tiles(lm: LatentMap, cfg: TileConfig | None = None, progress=None) -> dict:
    """Build and publish the tiles of a ready map; returns LatentMap.params["tiles"]."""
    from ml.progress import span
    from webapp.embeddings.services.maps import load_coords
    from webapp.embeddings.services.sky import sky_index
    from webapp.embeddings.services.vectors import load_embedding_set

    say = progress or (lambda d, t, m="": None)
    if lm.status != ArtifactStatus.READY:
        raise ValueError(f"map {lm.pk} is {lm.status}; it must be ready before its tiles are built")
    cfg = cfg or TileConfig()
    es = lm.embedding_set
    started = time.monotonic()
    say(0.0, 1, "reading coordinates, positions and colour layers")
    coords = np.asarray(load_coords(lm))
    ids, _, _ = load_embedding_set(es)
    sky = sky_index(es)
    radec = np.stack([sky.ra, sky.dec], axis=1)
    layers, legends = _layer_inputs(es, progress)
    version = uuid.uuid4().hex[:10]
    parent = Path(settings.DATA_DIR) / Path(es.vectors_path).parent
    final = parent / f"map-{lm.pk}-tiles-{version}"
    partial = parent / f"map-{lm.pk}-tiles-{version}.partial"
    try:
        sky_dir = partial / "sky"
        sky_dir.mkdir(parents=True)
        say(0.05, 1, "sky density by HEALPix cell")
        healpix_density.build_levels(sky.ra, sky.dec, SKY_MAX_ORDER, sky_dir)
        sky_bounds = None
        if len(sky.rows):
            ra, dec = sky.ra[sky.rows], sky.dec[sky.rows]
            sky_bounds = [float(ra.min()), float(dec.min()), float(ra.max()), float(dec.max())]
        manifest = build_tiles(partial, coords, ids, radec, layers, cfg, span(progress, 0.1, 0.98),
                               extra={"legends": legends, "sky_bounds": sky_bounds, "sky_max_order": SKY_MAX_ORDER,
                                      "map_checksum": lm.checksum})
        partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    info = {"version": version, "dir": str(final.relative_to(settings.DATA_DIR)),
            "point_levels": manifest["point_levels"], "density_levels": manifest["density_levels"],
            "seconds": round(time.monotonic() - started, 2)}
    lm.refresh_from_db(fields=["params"])
    lm.params = {**(lm.params or {}), "tiles": info}
    lm.save(update_fields=["params"])
    for old in parent.glob(f"map-{lm.pk}-tiles-*"):  # superseded pyramids and crashed builds
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    say(1, 1, f"tiles of {lm.n:,} galaxies ready")
    return info


def run_map_tiles_job(job, progress) -> dict:
    """Job handler: params {"latent_map_id": int, "config": {TileConfig overrides}}."""
    lm = LatentMap.objects.filter(pk=job.params.get("latent_map_id")).select_related("embedding_set").first()
    if lm is None:
        raise ValueError(f"latent map {job.params.get('latent_map_id')} does not exist")
    info = build_map_tiles(lm, tile_config(job.params.get("config")), progress)
    return {"latent_map_id": lm.pk, **info}


# ----------------------------------------------------------------- requests (O(tile))

def density_png(tr: TileReader, z, x, y, layer: str | None, palettes: dict) -> bytes | None:
    """One density (or colour-layer) tile as a PNG, north up; None when the tile is empty."""
    import io

    from PIL import Image

    tile = tr.density_tile(z, x, y, layer)
    if tile is None:
        return None
    if layer is None:
        rgba = _shade_counts(tile, tr.manifest["peaks"][int(z)])
    else:
        rgba = _shade_layer(tile, tr.manifest["legends"].get(layer, {}), palettes)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[::-1]), "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _lut(palette: list[str]) -> np.ndarray:
    return np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in palette], dtype=np.uint8)


def _shade_counts(counts: np.ndarray, peak: int) -> np.ndarray:
    """Log-shaded counts on one scale per level (its brightest pixel), so tiles join without seams."""
    from bokeh.palettes import Magma256

    lut = _lut(Magma256[40:])
    out = np.zeros(counts.shape + (4,), np.uint8)
    filled = counts > 0
    top = np.log1p(max(float(peak), float(counts.max()), 1.0))
    level = np.clip(np.log1p(counts[filled]) / top * (len(lut) - 1), 0, len(lut) - 1).astype(int)
    out[filled, :3] = lut[level]
    out[filled, 3] = 235
    return out


def _shade_layer(values: np.ndarray, legend: dict, palettes: dict) -> np.ndarray:
    out = np.zeros(values.shape + (4,), np.uint8)
    if legend.get("kind") == "categorical":
        lut = _lut(palettes["categorical"])
        ok = values >= 0
        out[ok, :3] = lut[values[ok].astype(int) % len(lut)]
    else:
        lut = _lut(palettes["numeric"])
        ok = np.isfinite(values)
        low, high = legend.get("low", 0.0), legend.get("high", 1.0)
        t = np.clip((values[ok] - low) / ((high - low) or 1.0), 0, 1)
        out[ok, :3] = lut[(t * (len(lut) - 1)).astype(int)]
    out[ok, 3] = 235
    return out


def point_tile_arrays(tr: TileReader, z, x, y, layer: str | None) -> tuple[dict[str, np.ndarray], int]:
    """({row, id, x, y, ra, dec, c} arrays of one point tile, points in the tile before the cap)."""
    pts, total = tr.point_tile(z, x, y)
    return points_arrays(tr, pts, layer), total


def points_arrays(tr: TileReader, pts: np.ndarray, layer: str | None, fields=None) -> dict[str, np.ndarray]:
    """{row, id, x, y, ra, dec, c} (or just ``fields``) of tile points (POINT_DTYPE); colours from
    the layer snapshot the tiles were built with."""
    c = tr.column(layer, pts["row"]) if layer and (fields is None or "c" in fields) else None
    arrays = {"row": pts["row"].astype(np.uint32), "id": _ids(pts["id"]),
              "x": pts["x"].astype(np.float32), "y": pts["y"].astype(np.float32),
              "ra": pts["ra"].astype(np.float32), "dec": pts["dec"].astype(np.float32),
              "c": c if c is not None else np.full(len(pts), np.nan, np.float32)}
    return arrays if fields is None else {name: arrays[name] for name in fields}


def _ids(ids: np.ndarray) -> np.ndarray:
    return ids.astype(np.int32) if (len(ids) == 0 or ids.max() < 2**31) else ids.astype(np.float64)


def sky_density(lm: LatentMap, bbox, bins: int) -> tuple[np.ndarray, tuple]:
    """(counts per HEALPix cell under each pixel (ny, nx), bbox) of a sky view: O(pixels)."""
    tr = reader(lm)
    bbox = bbox or _padded(tr.manifest.get("sky_bounds") or [0.0, -90.0, 360.0, 90.0])
    xmin, ymin, xmax, ymax = bbox
    aspect = (ymax - ymin) / (xmax - xmin)
    nx, ny = (bins, max(8, int(round(bins * aspect)))) if aspect <= 1 else (max(8, int(round(bins / aspect))), bins)
    counts, _ = healpix_density.raster(tr.directory / "sky", tr.manifest["sky_max_order"], bbox, nx, ny)
    return counts, tuple(bbox)


def _padded(b: list[float]) -> tuple:
    pad_x, pad_y = max((b[2] - b[0]) * 0.02, 1e-6), max((b[3] - b[1]) * 0.02, 1e-6)
    return b[0] - pad_x, b[1] - pad_y, b[2] + pad_x, b[3] + pad_y


def points_in_box(tr: TileReader, bbox, max_tiles: int = 64) -> np.ndarray:
    """Point-tile points (POINT_DTYPE) inside bbox from the deepest level that covers it with at most
    max_tiles tiles: a uniform sample of the view, O(tiles read)."""
    from ml.tiles import tile_xy, zoom_for

    xmin, ymin, xmax, ymax = bbox
    box = tuple(tr.manifest["box"])
    z = zoom_for(box[2], xmax - xmin, tr.manifest["point_levels"])
    while True:
        corners = np.array([[xmin, ymin], [xmax, ymax]], dtype=np.float64)
        (xa, xb), (ya, yb) = tile_xy(corners, box, z)
        if (xb - xa + 1) * (yb - ya + 1) <= max_tiles or z == 0:
            break
        z -= 1
    parts = [tr.point_tile(z, x, y)[0] for y in range(ya, yb + 1) for x in range(xa, xb + 1)]
    pts = np.concatenate(parts) if parts else np.empty(0, dtype=POINT_DTYPE)
    keep = (pts["x"] >= xmin) & (pts["x"] <= xmax) & (pts["y"] >= ymin) & (pts["y"] <= ymax)
    return pts[keep]


def mosaic_grid(lm: LatentMap, bbox, cells_across: int):
    """(MosaicGrid over the view's point-tile sample, galaxy id of each chosen cell): O(tiles)."""
    from ml.mosaic import mosaic_cells

    pts = points_in_box(reader(lm), bbox)
    grid = mosaic_cells(np.stack([pts["x"], pts["y"]], axis=1), bbox, cells_across)
    ids = pts["id"][grid.rows]
    grid.rows = pts["row"][grid.rows]
    return grid, ids


def rows_in_view_from_tiles(lm: LatentMap, bbox, limit: int | None, offset: int) -> tuple[np.ndarray, int] | None:
    """(rows sorted ascending, total in view): view_points' rows."""
    found = view_points(lm, bbox, limit, offset)
    return None if found is None else (found[0]["row"].astype(np.int64), found[1])


def view_points(lm: LatentMap, bbox, limit: int | None, offset: int) -> tuple[np.ndarray, int] | None:
    """(tile points (POINT_DTYPE) sorted by row, total in view) of the page [offset, offset + limit)
    of the view in the tiles' priority order, read from the point tiles (TileReader.points_in_box):
    O(tiles read), never O(N); None when the pyramid predates stored ranks (the caller falls
    back; a rebuild upgrades it).  A page deeper than the tiles can answer within their read
    budget is ViewTooDeep (HTTP 400), which says how to get those points instead."""
    tr = reader(lm)
    box = bbox if bbox is not None else tuple(tr.manifest["bounds"])
    want = offset + (limit if limit is not None else tr.manifest["n"])
    found = tr.points_in_box(box, want)
    if found is None:
        return None
    if len(found.points) < want and not found.complete and len(found.points) < found.total:
        raise ViewTooDeep(
            f"this view holds about {found.total:,} points; a tiled map pages through the first "
            f"{len(found.points):,} of a view (priority order) from its tiles. Zoom in (a smaller bbox), "
            "fetch /tiles/…/points/z/x/y, or download the embedding set's Parquet export")
    page = found.points[offset:want]
    return page[np.argsort(page["row"], kind="stable")], int(found.total)

