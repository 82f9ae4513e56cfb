"""Latent map JSON/binary API: maps, one map's page data, points, colour layers, density, mosaic.

Points, density and mosaic also answer binary (packed arrays, PNG, JPEG); those bodies are
declared in the OpenAPI document by media type.
"""
from __future__ import annotations

import io
from typing import Literal

import numpy as np
from django.http import Http404, HttpResponse
from ninja import Field, Query, Router
from PIL import Image

from webapp.apikit import Error, Out
from webapp.embeddings.models import LatentMap
from webapp.embeddings.services import map_data, map_tiles, mosaic
from webapp.embeddings.maps.views import CATEGORICAL, IMAGE_CACHE, _ready_map, default_layer, map_meta, palettes

router = Router()
BBOX = "x0,y0,x1,y1 in map (or sky) coordinates; the whole map when absent"


class MapOut(Out):
    id: int
    embedding_set: int
    name: str
    n: int | None = None
    status: str
    seconds: float | None = None
    params: dict | None = Field(None, description="UMAP parameters")
    created_at: str
    url: str


class MapList(Out):
    maps: list[MapOut]


class MapDetail(MapOut):
    """A map plus what its page needs: bounds, sky bounds, colour layers, budgets and URLs."""
    bounds: list[float]
    sky_bounds: list[float] | None = None
    layers: list[dict]
    default_layer: str
    urls: dict[str, str]


class PointsOut(Out):
    count: int
    total: int
    offset: int
    limit: int
    next_offset: int | None = None
    points: dict = Field(description="column name -> list of values (row, x, y, id and the asked fields)")


class LayerMenu(Out):
    layers: list[dict]
    default: str


class Legend(Out):
    key: str
    label: str
    kind: str = Field(description="numeric or categorical")
    group: str | None = None
    unit: str | None = None
    categories: list | None = None
    counts: list | None = None
    low: float | None = None
    high: float | None = None
    missing: int


class DensityOut(Out):
    bbox: list[float]
    shape: list[int]
    counts: list[list[int]] = Field(description="counts[row][col]; row 0 is the lowest y")
    note: str


class MosaicOut(Out):
    bbox: list[float]
    nx: int
    ny: int
    cell: float
    cells: list[dict] = Field(description="ix, iy and the galaxy id shown in that cell")


class PointsQuery(Out):
    format: Literal["json", "bin"] = Field("json", description="bin: packed little-endian arrays (X-Fields)")
    bbox: str | None = Field(None, description=BBOX)
    limit: int | None = Field(None, ge=1, le=map_data.MAX_LIMIT)
    offset: int = Field(0, ge=0, le=10**9)
    fields: str | None = Field(None, description=f"comma-separated, of {', '.join(map_data.FIELDS)}")
    layer: str | None = Field(None, description="colour layer key for the c field")


class DensityQuery(Out):
    bbox: str | None = Field(None, description=BBOX)
    bins: int = Field(256, ge=8, le=map_data.MAX_BINS)
    space: Literal["map", "sky"] = "map"
    format: Literal["png", "json"] = "png"
    flip: str | None = Field(None, description="x: RA grows to the left (sky view)")


class MosaicQuery(Out):
    bbox: str | None = Field(None, description=BBOX)
    cells: int = Field(24, ge=2, le=mosaic.MAX_CELLS)
    tile: int = Field(48, ge=16, le=128)
    format: Literal["jpeg", "json"] = "jpeg"


def media(kind: str, description: str) -> dict:
    return {"responses": {200: {"description": description, "content": {kind: {"schema": {
        "type": "string", "format": "binary"}}}}}}


def map_dict(lm: LatentMap) -> dict:
    return {"id": lm.pk, "embedding_set": lm.embedding_set_id, "name": str(lm.embedding_set), "n": lm.n,
            "status": lm.status, "seconds": lm.seconds, "params": lm.params,
            "created_at": lm.created_at.isoformat(), "url": f"/maps/{lm.pk}/"}


@router.get("/maps/", response=MapList, url_name="map_api_list", summary="Latent maps (UMAP of an embedding set)")
def api_maps(request):
    maps = LatentMap.objects.select_related("embedding_set").order_by("-created_at", "-id")[:200]
    return {"maps": [map_dict(lm) for lm in maps]}


@router.get("/maps/{int:map_id}/", response={200: MapDetail, 404: Error}, url_name="map_api_detail",
            summary="One map with what the page needs: bounds, sky bounds, colour layers, budgets, URLs")
def api_map_detail(request, map_id: int):
    lm = _ready_map(map_id)
    return {**map_dict(lm), **map_meta(request, lm)}


@router.get("/maps/{int:map_id}/points", response={200: PointsOut, 400: Error, 404: Error},
            url_name="map_api_points", openapi_extra=media("application/octet-stream", "format=bin"),
            summary="Points in a view, in a fixed random priority order (a capped view is a uniform sample)")
def api_points(request, map_id: int, q: Query[PointsQuery]):
    lm = _ready_map(map_id)
    bbox = map_data.parse_bbox(q.bbox)
    default = (lm.n if lm.n <= map_data.POINT_BUDGET else map_data.VIEW_LIMIT) if q.format == "bin" else 10_000
    limit = q.limit or default
    fields = map_data.parse_fields(q.fields)
    page = (map_tiles.view_points(lm, bbox, limit, q.offset)
            if map_tiles.tiled(lm) and map_tiles.tiles_info(lm) else None)
    if page is not None:   # a tiled map: the page comes from its point tiles, O(tiles read)
        points, total = page
        rows = points["row"]
        arrays = map_tiles.points_arrays(map_tiles.reader(lm), points, q.layer or None, fields)
    else:
        rows, total = map_data.rows_in_view(lm, bbox, limit, q.offset)
        arrays = map_data.point_arrays(lm, rows, fields, q.layer or None)
    if q.format == "bin":
        body, spec = map_data.pack_binary(arrays)
        return HttpResponse(body, content_type="application/octet-stream", headers={
            "X-Count": str(len(rows)), "X-Total": str(total), "X-Fields": spec, "Cache-Control": "private, no-cache"})
    return {"count": len(rows), "total": total, "offset": q.offset, "limit": limit,
            "next_offset": q.offset + len(rows) if q.offset + len(rows) < total else None,
            "points": map_data.json_arrays(arrays)}


@router.get("/maps/{int:map_id}/layers", response={200: LayerMenu | Legend, 400: Error, 404: Error},
            url_name="map_api_layers", summary="Colour layers offered for this map, or one layer's legend with ?key=")
def api_layers(request, map_id: int, key: str | None = None):
    lm = _ready_map(map_id)
    es = lm.embedding_set
    if not key:
        menu = map_data.layer_menu(es)
        return {"layers": menu, "default": default_layer(es, menu)}
    if map_tiles.tiled(lm):  # the legend snapshotted with the tiles: no pass over N galaxies
        legend = _tiles(lm).manifest.get("legends", {}).get(key)
        if legend is None:
            raise map_data.MapDataError(f"colour layer {key!r} is not in this map's tiles; rebuild the tiles to add it")
        return legend
    v = map_data.layer_values(es, key)
    finite = int(np.isfinite(v.codes).sum())
    return {"key": v.key, "label": v.label, "kind": v.kind, "group": v.group, "unit": v.unit,
            "categories": v.categories, "counts": v.counts, "low": v.low, "high": v.high,
            "missing": int(len(v.codes) - finite)}


@router.get("/maps/{int:map_id}/density", response={200: DensityOut, 400: Error, 404: Error},
            url_name="map_api_density", openapi_extra=media("image/png", "log-shaded PNG (format=png)"),
            summary="Point density over a view: log-shaded PNG (default) or counts as JSON")
def api_density(request, map_id: int, q: Query[DensityQuery]):
    lm = _ready_map(map_id)
    if q.space == "sky" and map_tiles.tiled(lm):  # HEALPix counts precomputed with the tiles: O(pixels)
        _tiles(lm)
        counts, box = map_tiles.sky_density(lm, map_data.parse_bbox(q.bbox), q.bins)
    else:
        counts, box = map_data.density(lm, map_data.parse_bbox(q.bbox), q.bins, q.space)
    if q.format == "json":
        return {"bbox": list(box), "shape": list(counts.shape), "counts": counts.astype(int).tolist(),
                "note": "counts[row][col]; row 0 is the lowest y"}
    rgba = map_data.shade(counts)
    if q.flip == "x":  # sky view: RA grows to the left
        rgba = rgba[:, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, format="PNG", compress_level=1)
    return HttpResponse(buf.getvalue(), content_type="image/png", headers={
        "Cache-Control": IMAGE_CACHE, "X-Bbox": ",".join(f"{v:.6g}" for v in box)})


@router.get("/maps/{int:map_id}/mosaic", response={200: MosaicOut, 400: Error, 404: Error},
            url_name="map_api_mosaic", openapi_extra=media("image/jpeg", "cutouts at their positions (format=jpeg)"),
            summary="Cutouts at their map positions over a view (JPEG), or the chosen galaxy per cell (JSON)")
def api_mosaic(request, map_id: int, q: Query[MosaicQuery]):
    lm = _ready_map(map_id)
    bbox = map_data.parse_bbox(q.bbox) or tuple(map_tiles.reader(lm).manifest["bounds"] if map_tiles.tiled(lm)
                                                 else map_data.map_bounds(lm))
    grid = mosaic.grid(lm, bbox, q.cells)
    if q.format == "json":
        ids = mosaic.grid_ids(lm, grid)
        return {"bbox": list(grid.bbox), "nx": grid.nx, "ny": grid.ny, "cell": grid.cell,
                "cells": [{"ix": int(c[0]), "iy": int(c[1]), "id": g} for c, g in zip(grid.cells, ids)]}
    data = mosaic.render_jpeg(lm, grid, q.tile)
    return HttpResponse(data, content_type="image/jpeg", headers={
        "Cache-Control": IMAGE_CACHE, "X-Bbox": ",".join(f"{v:.6g}" for v in grid.bbox)})


# ----------------------------------------------------------------- tiles (maps above MAP_TILE_THRESHOLD)

TILE_CACHE = "private, max-age=31536000, immutable"  # the URL names the tile set's version


class TileQuery(Out):
    format: Literal["png", "json", "bin"] | None = Field(
        None, description="density: png (default) or json counts; points: bin (default) or json")
    layer: str | None = Field(None, description="density: a colour layer's aggregate instead of counts; "
                                                "points: the layer's value as field c")


def _tiles(lm: LatentMap, version: str | None = None):
    try:
        return map_tiles.reader(lm, version)
    except map_tiles.TilesNotReady as exc:
        raise Http404(str(exc)) from None


@router.get("/maps/{int:map_id}/tiles/{version}/{kind}/{z}/{x}/{y}", response={200: dict, 400: Error, 404: Error},
            url_name="map_api_tile", openapi_extra=media("application/octet-stream", "points (format=bin) or PNG"),
            summary="One map tile: density/colour aggregate (PNG) or up to M priority-sampled points; O(tile)")
def api_tile(request, map_id: int, version: str, kind: str, z: str, x: str, y: str, q: Query[TileQuery]):
    """Tile (z, x, y): level z has 2^z x 2^z tiles over the map's square world box (manifest `box`),
    x from the left, y from the bottom.  Empty density tiles are 404 (nothing to draw); an empty point
    tile is an empty list.  The response never changes for this URL (the version is in it)."""
    lm = _ready_map(map_id)
    tr = _tiles(lm, version)
    if kind == "density":
        if q.format == "json":
            tile = tr.density_tile(z, x, y, q.layer or None)
            if tile is None:
                raise Http404(f"tile {z}/{x}/{y} of map {lm.pk} is empty")
            return HttpResponse(_json({"z": int(z), "x": int(x), "y": int(y), "layer": q.layer or None,
                                       "values": np.where(np.isfinite(tile), tile, -1).tolist(),
                                       "note": "values[row][col]; row 0 is the lowest y; -1: no value"}),
                                content_type="application/json", headers={"Cache-Control": TILE_CACHE})
        png = map_tiles.density_png(tr, z, x, y, q.layer or None, palettes())
        if png is None:
            raise Http404(f"tile {z}/{x}/{y} of map {lm.pk} is empty")
        return HttpResponse(png, content_type="image/png", headers={"Cache-Control": TILE_CACHE})
    if kind == "points":
        arrays, total = map_tiles.point_tile_arrays(tr, z, x, y, q.layer or None)
        headers = {"X-Count": str(len(arrays["row"])), "X-Total": str(total), "Cache-Control": TILE_CACHE}
        if q.format == "json":
            return HttpResponse(_json({"count": len(arrays["row"]), "total": total,
                                       "points": map_data.json_arrays(arrays)}),
                                content_type="application/json", headers=headers)
        body, spec = map_data.pack_binary(arrays)
        return HttpResponse(body, content_type="application/octet-stream", headers={**headers, "X-Fields": spec})
    raise map_data.MapDataError(f"tile kind must be 'density' or 'points', got {kind!r}")


def _json(data) -> str:
    import json
    return json.dumps(data)
