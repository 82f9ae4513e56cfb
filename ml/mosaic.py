"""Cutout mosaics of a 2-D map, in the manner of Hayat et al. 2021 (fig. 5) and Stein et al. 2021.

The view is cut into an nx x ny grid of square cells; each cell that holds at least one
point shows the cutout of the point nearest the cell centre, so the image reads as "what
the galaxies look like here" across the map.  Pure numpy: the caller fetches the tiles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MosaicGrid:
    bbox: tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax) covered by the grid
    nx: int
    ny: int
    cell: float                              # cell side, map units
    cells: np.ndarray                        # (M, 2) int (ix, iy) of occupied cells; iy = 0 is the bottom row
    rows: np.ndarray                         # (M,) int64 row of the point shown in each cell


def grid_for_view(bbox: tuple[float, float, float, float], cells_across: int) -> tuple[int, int, float, tuple]:
    """Square cells: cells_across along the longer side. Returns (nx, ny, cell, padded bbox)."""
    xmin, ymin, xmax, ymax = bbox
    cell = max(xmax - xmin, ymax - ymin) / cells_across
    nx = max(1, int(np.ceil((xmax - xmin) / cell - 1e-9)))
    ny = max(1, int(np.ceil((ymax - ymin) / cell - 1e-9)))
    return nx, ny, cell, (xmin, ymin, xmin + nx * cell, ymin + ny * cell)


def mosaic_cells(coords: np.ndarray, bbox: tuple[float, float, float, float], cells_across: int = 24
                 ) -> MosaicGrid:
    """For every occupied cell of the view, the row of the point closest to the cell centre.

    coords (N, 2) map coordinates; points outside bbox are ignored.
    """
    nx, ny, cell, padded = grid_for_view(bbox, cells_across)
    xmin, ymin = padded[0], padded[1]
    x, y = coords[:, 0], coords[:, 1]
    inside = np.flatnonzero((x >= xmin) & (x < padded[2]) & (y >= ymin) & (y < padded[3]))
    if len(inside) == 0:
        return MosaicGrid(padded, nx, ny, cell, np.zeros((0, 2), int), np.zeros(0, np.int64))
    fx = (x[inside] - xmin) / cell          # (K,) position in cell units
    fy = (y[inside] - ymin) / cell
    ix = np.minimum(fx.astype(int), nx - 1)
    iy = np.minimum(fy.astype(int), ny - 1)
    dist = (fx - ix - 0.5) ** 2 + (fy - iy - 0.5) ** 2  # squared distance to the cell centre
    flat = iy * nx + ix
    order = np.lexsort((dist, flat))        # by cell, then nearest first
    first = order[np.r_[True, flat[order][1:] != flat[order][:-1]]]
    return MosaicGrid(padded, nx, ny, cell, np.stack([ix[first], iy[first]], axis=1), inside[first].astype(np.int64))


def compose(grid: MosaicGrid, tiles: list[np.ndarray], tile_px: int,
            background: tuple[int, int, int] = (11, 15, 26)) -> np.ndarray:
    """Paste (tile_px, tile_px, 3) uint8 tiles into their cells. -> (ny*t, nx*t, 3) uint8, north up."""
    out = np.empty((grid.ny * tile_px, grid.nx * tile_px, 3), dtype=np.uint8)
    out[:] = background
    for (ix, iy), tile in zip(grid.cells, tiles):
        if tile is None:
            continue
        top = (grid.ny - 1 - int(iy)) * tile_px  # image row 0 is the top of the view
        out[top:top + tile_px, int(ix) * tile_px:(int(ix) + 1) * tile_px] = tile[:tile_px, :tile_px, :3]
    return out
