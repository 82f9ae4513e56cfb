"""ml/mosaic.py: one cutout per occupied cell, nearest the cell centre; tiles land north-up."""
import numpy as np
import pytest

from ml.mosaic import compose, grid_for_view, mosaic_cells

pytestmark = pytest.mark.unit


def test_grid_has_square_cells_covering_the_view():
    nx, ny, cell, box = grid_for_view((0.0, 0.0, 10.0, 4.0), 5)
    assert (nx, ny, cell) == (5, 2, 2.0) and box == (0.0, 0.0, 10.0, 4.0)
    nx, ny, cell, box = grid_for_view((0.0, 0.0, 10.0, 3.0), 5)
    assert (nx, ny) == (5, 2) and box[3] == 4.0  # the last row is padded to a whole cell


def test_each_occupied_cell_shows_the_point_nearest_its_centre():
    coords = np.array([[0.2, 0.2], [0.9, 1.1], [1.0, 1.0],   # cell (0, 0): (1, 1) is its centre
                       [3.5, 0.5],                           # cell (1, 0), alone
                       [9.0, 9.0]], dtype=np.float32)        # outside the view
    grid = mosaic_cells(coords, (0.0, 0.0, 4.0, 2.0), 2)
    got = {(int(c[0]), int(c[1])): int(r) for c, r in zip(grid.cells, grid.rows)}
    assert got == {(0, 0): 2, (1, 0): 3}


def test_brute_force_agreement_on_random_points():
    rng = np.random.default_rng(0)
    coords = rng.uniform(-5, 5, (500, 2)).astype(np.float32)
    grid = mosaic_cells(coords, (-5.0, -5.0, 5.0, 5.0), 7)
    for (ix, iy), row in zip(grid.cells, grid.rows):
        lo = np.array([-5 + ix * grid.cell, -5 + iy * grid.cell])
        inside = np.flatnonzero(np.all((coords >= lo) & (coords < lo + grid.cell), axis=1))
        centre = lo + grid.cell / 2
        assert row == inside[np.argmin(((coords[inside] - centre) ** 2).sum(1))]
    assert len(grid.rows) == len({tuple(c) for c in grid.cells.tolist()})


def test_compose_puts_tiles_north_up_on_the_background():
    coords = np.array([[0.5, 0.5], [1.5, 1.5]], dtype=np.float32)  # bottom-left and top-right cells
    grid = mosaic_cells(coords, (0.0, 0.0, 2.0, 2.0), 2)
    tiles = [np.full((4, 4, 3), 200 if r == 0 else 100, np.uint8) for r in grid.rows]
    image = compose(grid, tiles, 4, background=(1, 2, 3))
    assert image.shape == (8, 8, 3)
    assert (image[4:, :4] == 200).all()   # row 0 (y low) is drawn at the bottom
    assert (image[:4, 4:] == 100).all()   # row 1 (y high, x high) at the top right
    assert (image[:4, :4] == [1, 2, 3]).all()
