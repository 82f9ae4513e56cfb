"""Sky density by HEALPix cell, precomputed once and drawn per view without touching the N galaxies.

Build: every galaxy's (RA, Dec) -> its NESTED HEALPix cell at `max_order` (nside = 2^order,
astropy-healpix); each coarser order is the same cells with the last two bits dropped per
order (nested numbering), so one sort gives every order.  Only occupied cells are stored:
per order a sorted cell array and a count array (``cells-<o>.npy``, ``counts-<o>.npy``).

Serve: a view (RA/Dec box, nx x ny pixels) picks the order whose cells are about one pixel,
asks astropy-healpix which cell each pixel centre falls in and looks their counts up by
searchsorted: O(pixels in view), whatever N is.  HEALPix cells have equal area, so the counts
are a density (galaxies per cell of that order).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

MAX_PIXELS = 1024 * 1024  # largest raster a view may ask for


def cell_ids(ra: np.ndarray, dec: np.ndarray, order: int) -> np.ndarray:
    """(N,) int64 NESTED cell of each position (degrees) at `order` (nside = 2^order)."""
    from astropy import units as u
    from astropy_healpix import lonlat_to_healpix

    return np.asarray(lonlat_to_healpix(np.asarray(ra, np.float64) * u.deg, np.asarray(dec, np.float64) * u.deg,
                                        1 << order, order="nested"), dtype=np.int64)


def build_levels(ra: np.ndarray, dec: np.ndarray, max_order: int, directory: str | Path | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(cells, counts)] for orders 0..max_order from positions (NaN or |Dec| > 90 positions are skipped); saved
    into `directory` as cells-<o>.npy / counts-<o>.npy when given."""
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)  # impossible Dec: no cell
    deepest = np.sort(cell_ids(ra[ok], dec[ok], max_order)) if ok.any() else np.zeros(0, np.int64)
    levels = []
    for order in range(max_order + 1):
        shifted = deepest >> (2 * (max_order - order))
        cells, counts = np.unique(shifted, return_counts=True)  # sorted input stays sorted
        levels.append((cells.astype(np.int64), counts.astype(np.int64)))
        if directory is not None:
            np.save(Path(directory) / f"cells-{order}.npy", cells.astype(np.int64))
            np.save(Path(directory) / f"counts-{order}.npy", counts.astype(np.int64))
    return levels


def order_for(pixel_deg: float, max_order: int) -> int:
    """The coarsest order whose cells (side ~ 58.6 deg / 2^order) are no larger than one pixel."""
    if pixel_deg <= 0:
        return max_order
    side0 = math.degrees(math.sqrt(4 * math.pi / 12))
    return int(min(max_order, max(0, math.ceil(math.log2(side0 / pixel_deg)))))


def raster(levels_or_dir, max_order: int, bbox: tuple[float, float, float, float], nx: int, ny: int
           ) -> tuple[np.ndarray, int]:
    """((ny, nx) float32 counts per cell under each pixel centre, row 0 the lowest Dec; the order used).

    levels_or_dir: build_levels' list, or the directory it saved into (read memory-mapped)."""
    if nx * ny > MAX_PIXELS:
        raise ValueError(f"{nx} x {ny} pixels is more than {MAX_PIXELS:,}")
    ra0, dec0, ra1, dec1 = bbox
    order = order_for(min((ra1 - ra0) * max(math.cos(math.radians(_mid_dec(dec0, dec1))), 0.05) / nx,
                          (dec1 - dec0) / ny), max_order)
    if isinstance(levels_or_dir, (str, Path)):
        cells = np.load(Path(levels_or_dir) / f"cells-{order}.npy", mmap_mode="r")
        counts = np.load(Path(levels_or_dir) / f"counts-{order}.npy", mmap_mode="r")
    else:
        cells, counts = levels_or_dir[order]
    ra = ra0 + (np.arange(nx) + 0.5) * (ra1 - ra0) / nx
    dec = np.clip(dec0 + (np.arange(ny) + 0.5) * (dec1 - dec0) / ny, -90, 90)
    grid_ra, grid_dec = np.meshgrid(np.mod(ra, 360.0), dec)   # (ny, nx)
    pix = cell_ids(grid_ra.ravel(), grid_dec.ravel(), order)
    out = np.zeros(pix.shape, np.float32)
    if len(cells):
        i = np.clip(np.searchsorted(cells, pix), 0, len(cells) - 1)
        hit = np.asarray(cells[i]) == pix
        out[hit] = np.asarray(counts[i[hit]], dtype=np.float32)
    return out.reshape(ny, nx), order


def _mid_dec(a: float, b: float) -> float:
    return max(-89.0, min(89.0, (a + b) / 2))
