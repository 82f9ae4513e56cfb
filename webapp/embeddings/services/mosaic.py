"""Mosaic images for the map page: thumbnails pasted at their map positions (ml/mosaic.py).

Tiles come from the catalogue's thumbnail renderer and its on-disk cache
(webapp/catalog/services/render.py), so a mosaic uses exactly the colours of the grid
and detail pages and mostly reads cached PNGs.  Galaxies of a survey whose cutouts come from a
remote cutout service are drawn only when already cached (a mosaic never fetches thousands).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ml.mosaic import MosaicGrid, compose, mosaic_cells
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.render import galaxy_thumbnail
from webapp.catalog.services.store_cache import StoreMissing
from webapp.embeddings.services.maps import load_coords
from webapp.embeddings.services.vectors import load_embedding_set

MAX_CELLS = 64         # cells along the longer side (64 x 48 px = a 3072 px image)
JPEG_QUALITY = 82      # ~10x smaller than PNG for photographic tiles, artefacts invisible at 48 px


def grid(lm, bbox, cells_across: int) -> MosaicGrid:
    """The galaxy per cell; for a tiled map (map_tiles) chosen from the view's point tiles, O(tiles),
    with the chosen galaxies' ids on ``grid.ids``."""
    from webapp.embeddings.services import map_tiles

    if map_tiles.tiled(lm):
        g, ids = map_tiles.mosaic_grid(lm, bbox, cells_across)
        g.ids = ids
        return g
    return mosaic_cells(load_coords(lm), bbox, cells_across)


def grid_ids(lm, grid: MosaicGrid) -> list[int]:
    ids = getattr(grid, "ids", None)
    if ids is None:
        all_ids, _, _ = load_embedding_set(lm.embedding_set)
        ids = all_ids[grid.rows]
    return [int(g) for g in ids]


def tiles_for(lm, grid: MosaicGrid, tile_px: int) -> list[np.ndarray | None]:
    """(tile, tile, 3) uint8 thumbnails of the grid's galaxies, None where one cannot be drawn."""
    wanted = grid_ids(lm, grid)
    where = {g.pk: g for g in Galaxy.objects.filter(pk__in=wanted).only(
        "id", "survey_id", "image_index", "ra", "dec", "source_id")}
    surveys = {s.pk: s for s in Survey.objects.filter(pk__in={g.survey_id for g in where.values()})}
    tiles = []
    for gid in wanted:
        if gid not in where:
            tiles.append(None)
            continue
        galaxy = where[gid]
        try:
            thumb = galaxy_thumbnail(surveys[galaxy.survey_id], galaxy, size=tile_px, fetch=False)
        except (StoreMissing, OSError, ValueError):  # a missing store leaves the cell empty
            tiles.append(None)
            continue
        tiles.append(np.asarray(Image.open(io.BytesIO(thumb.data)).convert("RGB")) if thumb.ok else None)
    return tiles


def render_jpeg(lm, grid: MosaicGrid, tile_px: int) -> bytes:
    image = compose(grid, tiles_for(lm, grid, tile_px), tile_px)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
