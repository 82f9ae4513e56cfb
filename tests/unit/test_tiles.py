"""ml/tiles.py: the tile pyramid adds up, nests, and reads one tile at a time."""
from __future__ import annotations

import numpy as np
import pytest

from ml.tiles import LayerInput, TileConfig, TileError, TileReader, build_tiles, tile_bbox, tile_xy

N = 20_000


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    rng = np.random.default_rng(1)
    centres = rng.uniform(-8, 8, size=(6, 2))
    xy = (centres[np.arange(N) % 6] + rng.normal(scale=0.8, size=(N, 2))).astype(np.float32)
    ids = np.arange(N, dtype=np.int64) * 3 + 7
    radec = np.stack([rng.uniform(0, 360, N), rng.uniform(-90, 90, N)], axis=1)
    mag = rng.normal(20, 1, N).astype(np.float32)
    mag[::10] = np.nan
    cls = (np.arange(N) % 6 % 3).astype(np.float32)
    cfg = TileConfig(tile_size=32, density_levels=3, points_per_tile=300)
    directory = tmp_path_factory.mktemp("tiles")
    manifest = build_tiles(directory, xy, ids, radec, [LayerInput("mag", "numeric", mag),
                                                        LayerInput("cls", "categorical", cls, 3)], cfg)
    return xy, ids, mag, manifest, TileReader(directory), cfg


def test_every_density_level_adds_up_to_n(built):
    xy, _, _, manifest, reader, cfg = built
    for z in range(manifest["density_levels"] + 1):
        total = 0
        for x in range(1 << z):
            for y in range(1 << z):
                tile = reader.density_tile(z, x, y)
                total += 0 if tile is None else int(tile.sum())
        assert total == N


def test_density_tile_counts_the_points_inside_it(built):
    xy, _, _, manifest, reader, _ = built
    z = 2
    tx, ty = tile_xy(xy, tuple(manifest["box"]), z)
    for x, y in [(1, 1), (2, 1), (1, 2)]:
        tile = reader.density_tile(z, x, y)
        expected = int(((tx == x) & (ty == y)).sum())
        assert (0 if tile is None else int(tile.sum())) == expected
        x0, y0, x1, y1 = tile_bbox(tuple(manifest["box"]), z, x, y)
        inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
        assert expected == int(inside.sum())


def test_point_tiles_are_capped_uniform_and_nested(built):
    xy, ids, _, manifest, reader, cfg = built
    assert manifest["point_levels"] >= 2
    deepest = manifest["point_levels"]
    seen = 0
    for z in range(deepest + 1):
        for x in range(1 << z):
            for y in range(1 << z):
                pts, total = reader.point_tile(z, x, y)
                assert len(pts) == min(total, cfg.points_per_tile)
                np.testing.assert_array_equal(pts["id"], ids[pts["row"]])
                np.testing.assert_array_equal(pts["x"], xy[pts["row"], 0])
                if z == deepest:
                    seen += len(pts)
                if z and len(pts):  # the parent's points inside this tile are all here too
                    parent, _ = reader.point_tile(z - 1, x // 2, y // 2)
                    px, py = tile_xy(np.stack([parent["x"], parent["y"]], 1), tuple(manifest["box"]), z)
                    mine = set(parent["row"][(px == x) & (py == y)].tolist())
                    assert mine <= set(pts["row"].tolist())
    assert seen == N  # the deepest level holds every point


def test_layers_mean_and_mode(built):
    xy, _, mag, manifest, reader, _ = built
    tile0 = reader.density_tile(0, 0, 0, layer="mag")
    counts0 = reader.density_tile(0, 0, 0)
    assert np.isnan(tile0[counts0 == 0]).all()
    assert np.nanmin(tile0) > 14 and np.nanmax(tile0) < 26
    cls = reader.density_tile(0, 0, 0, layer="cls")
    assert set(np.unique(cls).tolist()) <= {-1, 0, 1, 2}
    assert ((cls >= 0) == (counts0 > 0)).all()
    np.testing.assert_array_equal(reader.column("mag", np.array([3, 10, 11])), mag[[3, 10, 11]])


def test_bad_addresses_say_what_is_wrong(built):
    *_, reader, _ = built
    with pytest.raises(TileError, match="outside this map's levels"):
        reader.density_tile(9, 0, 0)
    with pytest.raises(TileError, match="outside level 1"):
        reader.point_tile(1, 2, 0)
    with pytest.raises(TileError, match="three integers"):
        reader.point_tile("a", 0, 0)
    with pytest.raises(TileError, match="has no tiles"):
        reader.density_tile(0, 0, 0, layer="nope")


@pytest.fixture(scope="module")
def small_caps(tmp_path_factory):
    """Clustered points with small tile caps, so the walk over levels matters."""
    rng = np.random.default_rng(3)
    centres = rng.uniform(-5, 5, size=(8, 2))
    xy = (centres[rng.integers(0, 8, 20_000)] + rng.normal(scale=0.7, size=(20_000, 2))).astype(np.float32)
    cfg = TileConfig(tile_size=16, density_levels=2, points_per_tile=64, seed=5)
    directory = tmp_path_factory.mktemp("box") / "tiles"
    build_tiles(directory, xy, np.arange(20_000) + 1000, None, cfg=cfg)
    return xy, cfg, TileReader(directory)


@pytest.mark.parametrize("bbox, need", [((-1, -1, 1, 1), 100), ((-6, -6, 6, 6), 500), ((0.3, -2, 0.9, 4), 50),
                                        ((-20, -20, 20, 20), 2_000), ((2.0, 2.0, 2.2, 2.1), 10_000)])
def test_points_in_box_are_the_lowest_ranked_points_in_the_box(small_caps, bbox, need):
    """The tiles' answer equals brute force over every point: the `need` lowest-ranked in the box."""
    from ml.tiles import priority_rank
    xy, cfg, reader = small_caps
    rank = priority_rank(len(xy), cfg.seed)
    inside = np.flatnonzero((xy[:, 0] >= bbox[0]) & (xy[:, 0] <= bbox[2]) & (xy[:, 1] >= bbox[1]) & (xy[:, 1] <= bbox[3]))
    truth = inside[np.argsort(rank[inside], kind="stable")]
    found = reader.points_in_box(bbox, need)
    got = found.points["row"]
    assert len(got) >= min(need, len(truth)) or not found.complete
    assert got[:need].tolist() == truth[:len(got[:need])].tolist()     # exact prefix, in priority order
    if found.total_exact:
        assert found.total == len(truth)
    else:
        assert abs(found.total - len(truth)) < 0.25 * len(truth) + 50
    if found.complete:
        assert got.tolist() == truth[:need].tolist()


def test_a_box_beyond_the_read_budget_answers_what_it_can(small_caps):
    xy, cfg, reader = small_caps
    found = reader.points_in_box((-20, -20, 20, 20), 20_000, budget=300)
    assert 0 < len(found.points) < 20_000 and not found.complete


@pytest.mark.parametrize("bbox", [(-1, -1, 1, 1), (-6, -6, 6, 6), (0.3, -2, 0.9, 4), (-20, -20, 20, 20),
                                  (2.0, 2.0, 2.2, 2.1), (-3.3, 1.1, -3.2, 9.0)])
def test_count_in_box_is_exact_from_the_complete_level(small_caps, bbox):
    xy, cfg, reader = small_caps
    truth = int(((xy[:, 0] >= bbox[0]) & (xy[:, 0] <= bbox[2]) & (xy[:, 1] >= bbox[1]) & (xy[:, 1] <= bbox[3])).sum())
    assert reader.count_in_box(bbox) == (truth, True)
    assert reader.points_in_box(bbox, 10).total == truth
