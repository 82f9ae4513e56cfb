"""Map tiles above MAP_TILE_THRESHOLD: the job, the tile endpoint (O(tile)), the page meta, the sky density."""
from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from ml.tiles import tile_bbox
from tests.embeddings.map_factories import make_embedding_set, make_latent_map
from webapp.embeddings.models import LatentMap
from webapp.embeddings.services import map_data, map_tiles, sky
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

N = 20_000
M = 500


@pytest.fixture(autouse=True)
def _fresh():
    map_data.forget_cached_layers()
    sky.forget_cached_positions()
    map_tiles._reader.cache_clear()
    yield
    map_data.forget_cached_layers()
    sky.forget_cached_positions()


@pytest.fixture(scope="module")
def shared_db(django_db_setup, django_db_blocker):
    yield


@pytest.fixture
def tiled_map(settings):
    settings.MAP_TILE_THRESHOLD = 1000
    es = make_embedding_set(n=N, dim=4)
    rng = np.random.default_rng(3)
    centres = rng.uniform(-8, 8, size=(5, 2))
    coords = (centres[np.arange(N) % 5] + rng.normal(scale=0.9, size=(N, 2))).astype(np.float32)
    lm = make_latent_map(es, coords)
    from ml.tiles import TileConfig
    map_tiles.build_map_tiles(lm, TileConfig(tile_size=32, density_levels=3, points_per_tile=M))
    lm.refresh_from_db()
    return lm, coords


def tile_url(lm, kind, z, x, y, query=""):
    v = lm.params["tiles"]["version"]
    return f"/api/maps/{lm.pk}/tiles/{v}/{kind}/{z}/{x}/{y}" + (f"?{query}" if query else "")


def parse_bin(response):
    fields = [f.split(":") for f in response["X-Fields"].split(",")]
    count, offset, out = int(response["X-Count"]), 0, {}
    for name, dtype in fields:
        out[name] = np.frombuffer(response.content, dtype="<" + dtype, count=count, offset=offset)
        offset += count * np.dtype(dtype).itemsize
    return out


def brute_rows_in_view(coords, bbox):
    """Every row inside bbox, by masking all coordinates (what the small-map path does)."""
    x0, y0, x1, y1 = bbox
    rows = np.flatnonzero((coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1))
    return rows, len(rows)


def test_tiles_add_up_to_the_points_in_view_and_agree_with_rows_in_view(role_clients, tiled_map):
    lm, coords = tiled_map
    client = role_clients["viewer"]
    box = tuple(lm.params and map_tiles.reader(lm).manifest["box"])
    z = 2
    for (xa, xb), (ya, yb) in [((0, 2), (0, 2)), ((1, 3), (1, 4)), ((0, 4), (0, 4))]:
        total_density = total_points = 0
        rows = []
        for x in range(xa, xb):
            for y in range(ya, yb):
                d = client.get(tile_url(lm, "density", z, x, y, "format=json"))
                assert d.status_code in (200, 404)
                if d.status_code == 200:
                    assert d["Cache-Control"] == "private, max-age=31536000, immutable"
                    total_density += int(np.maximum(np.array(d.json()["values"]), 0).sum())
                p = client.get(tile_url(lm, "points", z, x, y))
                assert p.status_code == 200
                total_points += int(p["X-Total"])
                rows.append(parse_bin(p)["row"])
        x0, y0, _, _ = tile_bbox(box, z, xa, ya)
        _, _, x1, y1 = tile_bbox(box, z, xb - 1, yb - 1)
        expected_rows, expected_total = brute_rows_in_view(coords, (x0, y0, x1, y1))
        assert total_density == total_points == expected_total
        # the points endpoint of a tiled map reads the same tiles and agrees with the brute force
        paged, paged_total = map_tiles.rows_in_view_from_tiles(lm, (x0, y0, x1, y1), 500, 0)
        assert paged_total == expected_total and set(paged.tolist()) <= set(expected_rows.tolist())
        assert len(paged) == min(500, expected_total)
        shown = np.concatenate(rows)
        assert set(shown.tolist()) <= set(expected_rows.tolist())


def test_deep_point_tiles_are_the_rows_in_view_and_carry_ids_and_colours(role_clients, tiled_map):
    lm, coords = tiled_map
    tr = map_tiles.reader(lm)
    z = tr.manifest["point_levels"]
    keys = np.load(tr.directory / f"pkeys-{z}.npy")
    key = int(keys[len(keys) // 2])
    x, y = key % (1 << z), key // (1 << z)
    r = role_clients["viewer"].get(tile_url(lm, "points", z, x, y, "layer=survey"))
    pts = parse_bin(r)
    expected, total = brute_rows_in_view(coords, tile_bbox(tuple(tr.manifest["box"]), z, x, y))
    assert int(r["X-Total"]) == total == len(pts["row"])  # deepest level: nothing capped
    assert sorted(pts["row"].tolist()) == expected.tolist()
    from webapp.embeddings.services.vectors import load_embedding_set
    ids, _, _ = load_embedding_set(lm.embedding_set)
    np.testing.assert_array_equal(pts["id"], ids[pts["row"]])
    np.testing.assert_array_equal(pts["x"], coords[pts["row"], 0])
    assert (pts["c"] == 0).all()  # one survey: category 0


def test_a_tile_request_reads_no_array_of_size_n(role_clients, tiled_map, monkeypatch):
    lm, _ = tiled_map
    client = role_clients["viewer"]
    client.get(tile_url(lm, "points", 0, 0, 0))  # warm the page cache of the reader
    map_tiles._reader.cache_clear()
    loads = []
    real_load = np.load

    def spy(path, *args, **kw):
        arr = real_load(path, *args, **kw)
        loads.append((str(path), kw.get("mmap_mode"), getattr(arr, "size", 0)))
        return arr

    def forbidden(*a, **k):
        raise AssertionError("a tile request touched the whole map")

    monkeypatch.setattr(np, "load", spy)
    for name in ("rows_in_view", "map_bounds", "density", "layer_values"):
        monkeypatch.setattr(map_data, name, forbidden)
    monkeypatch.setattr("webapp.embeddings.services.maps.load_coords", forbidden)
    monkeypatch.setattr("webapp.embeddings.services.sky.sky_index", forbidden)
    monkeypatch.setattr("webapp.embeddings.services.vectors.load_embedding_set", forbidden)
    for url in [tile_url(lm, "points", 0, 0, 0, "layer=survey"), tile_url(lm, "points", 3, 4, 4),
                tile_url(lm, "density", 0, 0, 0), tile_url(lm, "density", 1, 1, 1, "layer=survey"),
                f"/api/maps/{lm.pk}/layers?key=survey", f"/api/maps/{lm.pk}/", f"/maps/{lm.pk}/",
                f"/api/maps/{lm.pk}/density?space=sky&bins=64",
                f"/api/maps/{lm.pk}/mosaic?bbox=-2,-2,2,2&cells=6&format=json"]:
        r = client.get(url)
        assert r.status_code == 200, (url, r.content[:300])
    assert loads and all(mode == "r" for _, mode, _ in loads), loads  # every file memory-mapped...
    # ...and what a request copies out is one tile (checked in ml: np.array(tile slice))


def test_bad_tile_addresses_are_400_and_missing_tiles_404(role_clients, tiled_map):
    lm, _ = tiled_map
    client = role_clients["viewer"]
    for url, message in [(tile_url(lm, "points", "a", 0, 0), "three integers"),
                         (tile_url(lm, "points", 99, 0, 0), "outside this map's levels"),
                         (tile_url(lm, "density", 1, 2, 0), "outside level 1"),
                         (tile_url(lm, "density", 1, -1, 0), "outside level 1"),
                         (tile_url(lm, "pixels", 0, 0, 0), "'density' or 'points'"),
                         (tile_url(lm, "density", 0, 0, 0, "layer=nope"), "has no tiles")]:
        r = client.get(url)
        assert r.status_code == 400, url
        assert message in r.json()["error"]
    old = client.get(f"/api/maps/{lm.pk}/tiles/0123456789/points/0/0/0")
    assert old.status_code == 404 and "replaced" in old.json()["error"]
    tr = map_tiles.reader(lm)
    z = tr.manifest["density_levels"]
    keys = set(np.load(tr.directory / f"dkeys-{z}.npy").tolist())
    empty = next(k for k in range(4 ** z) if k not in keys)
    r = client.get(tile_url(lm, "density", z, empty % (1 << z), empty // (1 << z)))
    assert r.status_code == 404 and "empty" in r.json()["error"]
    bare = LatentMap.objects.create(embedding_set=lm.embedding_set, params={}, n=lm.n, status="ready",
                                    coords_path=lm.coords_path, checksum=lm.checksum)
    r = client.get(f"/api/maps/{bare.pk}/tiles/x/points/0/0/0")
    assert r.status_code == 404 and "no tiles yet" in r.json()["error"]


def test_page_meta_above_the_threshold_describes_tiles(role_clients, tiled_map):
    lm, coords = tiled_map
    r = role_clients["viewer"].get(f"/maps/{lm.pk}/")
    meta = r.context["meta"]
    assert meta["dense"] is True and meta["tiles"]["ready"] is True
    assert meta["tiles"]["url"] == f"/api/maps/{lm.pk}/tiles/{lm.params['tiles']['version']}"
    np.testing.assert_allclose(meta["bounds"], [*coords.min(0), *coords.max(0)], rtol=1e-6)
    legend = role_clients["viewer"].get(f"/api/maps/{lm.pk}/layers?key=survey").json()
    assert legend["kind"] == "categorical" and legend["counts"] == [N]


def test_sky_density_comes_from_healpix_cells(role_clients, tiled_map):
    lm, _ = tiled_map
    r = role_clients["viewer"].get(f"/api/maps/{lm.pk}/density?space=sky&bins=128&format=json")
    assert r.status_code == 200
    counts = np.array(r.json()["counts"])
    assert counts.sum() > 0
    # every pixel shows the number of galaxies in the HEALPix cell under its centre
    from ml import healpix_density
    s = sky.sky_index(lm.embedding_set)
    ok = np.isfinite(s.ra) & (np.abs(s.dec) <= 90)  # the factory's Dec runs past -90 at this N
    box = (float(s.ra[ok].min()) - 1, float(s.dec[ok].min()), float(s.ra[ok].max()) + 1, float(s.dec[ok].max()) + 1)
    grid, order = healpix_density.raster(map_tiles.reader(lm).directory / "sky", 10, box, 16, 12)
    assert order >= 1
    galaxy_cells = healpix_density.cell_ids(s.ra[ok], s.dec[ok], order)
    ra = box[0] + (np.arange(16) + 0.5) * (box[2] - box[0]) / 16
    dec = box[1] + (np.arange(12) + 0.5) * (box[3] - box[1]) / 12
    gra, gdec = np.meshgrid(ra, dec)
    pixel_cells = healpix_density.cell_ids(gra.ravel(), gdec.ravel(), order)
    expected = np.array([(galaxy_cells == c).sum() for c in pixel_cells]).reshape(12, 16)
    np.testing.assert_array_equal(grid, expected)
    assert grid.sum() > 0


def test_umap_job_queues_tiles_above_the_threshold(settings, tiled_map):
    lm, _ = tiled_map
    from webapp.embeddings.services.maps import _queue_tiles
    job = Job.objects.create(kind="umap", params={})
    first = _queue_tiles(job, lm)
    assert first.kind == "map_tiles" and first.params == {"latent_map_id": lm.pk}
    assert _queue_tiles(job, lm).pk == first.pk  # once per map
    settings.MAP_TILE_THRESHOLD = N
    assert _queue_tiles(job, lm) is None


def test_tiles_job_rebuild_replaces_the_old_version(tiled_map):
    lm, _ = tiled_map
    from webapp.embeddings.services.map_tiles import run_map_tiles_job
    old = lm.params["tiles"]
    job = Job.objects.create(kind="map_tiles", params={"latent_map_id": lm.pk,
                                                       "config": {"tile_size": 16, "density_levels": 1}})
    seen = []
    out = run_map_tiles_job(job, lambda d, t, m="": seen.append(m))
    lm.refresh_from_db()
    assert lm.params["tiles"]["version"] == out["version"] != old["version"]
    assert not (map_tiles._abs(old["dir"])).exists()
    assert seen[-1].startswith("tiles of 20,000 galaxies ready")
    with pytest.raises(ValueError, match="unknown tile option"):
        run_map_tiles_job(Job.objects.create(kind="map_tiles", params={"latent_map_id": lm.pk,
                                                                      "config": {"bogus": 1}}), lambda *a: None)


def test_mosaic_of_a_tiled_map_picks_galaxies_in_view_from_point_tiles(role_clients, tiled_map):
    lm, coords = tiled_map
    r = role_clients["viewer"].get(f"/api/maps/{lm.pk}/mosaic?bbox=-3,-3,3,3&cells=8&format=json")
    assert r.status_code == 200
    cells = r.json()["cells"]
    from ml.mosaic import mosaic_cells
    full = mosaic_cells(coords, (-3, -3, 3, 3), 8)  # what the whole map would fill
    assert len(full.rows) * 0.8 <= len(cells) <= len(full.rows)
    from webapp.embeddings.services.vectors import load_embedding_set
    ids, _, _ = load_embedding_set(lm.embedding_set)
    row_of = {int(g): i for i, g in enumerate(ids)}
    grid = r.json()
    for c in cells:  # each shown galaxy lies in its cell
        x, y = coords[row_of[c["id"]]]
        assert grid["bbox"][0] + c["ix"] * grid["cell"] <= x <= grid["bbox"][0] + (c["ix"] + 1) * grid["cell"]
        assert grid["bbox"][1] + c["iy"] * grid["cell"] <= y <= grid["bbox"][1] + (c["iy"] + 1) * grid["cell"]


def test_build_map_tiles_command_builds_and_reports(settings, capsys):
    from django.core.management import CommandError, call_command
    settings.MAP_TILE_THRESHOLD = 100
    es = make_embedding_set(n=300, dim=4)
    lm = make_latent_map(es)
    call_command("build_map_tiles", str(lm.pk), "--tile-size", "16", "--density-levels", "1", "--points-per-tile", "50")
    lm.refresh_from_db()
    out = capsys.readouterr()
    assert f"map {lm.pk}: tiles {lm.params['tiles']['version']}" in out.out
    assert "100.0%" in out.err  # the progress bar reached the end
    assert map_tiles.reader(lm).manifest["n"] == 300
    with pytest.raises(CommandError, match="does not exist"):
        call_command("build_map_tiles", "999999")
