"""A map above the tile threshold in Chromium: the page draws point tiles over density tiles,
zooming in loads deeper tiles, and hovering a point still shows its cutout."""
import numpy as np
import pytest

from ml.tiles import TileConfig
from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.embeddings.services import map_tiles
from webapp.embeddings.services.vectors import load_embedding_set

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N = 600
CENTRES = np.array([[-8.0, -8.0], [8.0, -8.0], [0.0, 8.0]])


@pytest.fixture
def tiled_world(role_groups, settings):
    settings.MAP_TILE_THRESHOLD = 100  # this small map is served the way a 10^7 one is
    survey = make_survey(name="Tiled survey", slug="tiledsurvey", n=N, size=32)
    vectors, labels = clustered_vectors(N, 8, clusters=3)
    es = make_embedding_set(survey=survey, vectors=vectors)
    coords = CENTRES[labels] + np.random.default_rng(0).normal(scale=1.5, size=(N, 2))
    lm = make_latent_map(es, coords.astype(np.float32))
    map_tiles._reader.cache_clear()
    map_tiles.build_map_tiles(lm, TileConfig(tile_size=64, density_levels=2, points_per_tile=40))
    lm.refresh_from_db()
    return {"lm": lm, "ids": np.asarray(load_embedding_set(es)[0]), "coords": coords}


def test_tiled_map_zooms_through_point_tiles_and_hover_shows_cutouts(page, live_server, login, make_user,
                                                                     tiled_world, screenshot_dir):
    lm = tiled_world["lm"]
    tiles_seen = []
    page.on("request", lambda r: tiles_seen.append(r.url) if "/tiles/" in r.url else None)
    make_user("viewer", "vera")
    login("vera", "pw-vera", f"/maps/{lm.pk}/")
    page.wait_for_selector("#map-canvas[data-rendered='1']")
    page.wait_for_function("() => LatentMapPage.overlay.data.url.length > 0")
    loaded = int(page.eval_on_selector("#map-canvas", "e => e.dataset.pointsLoaded"))
    z0 = int(page.eval_on_selector("#map-canvas", "e => e.dataset.tileZ"))
    assert 0 < loaded < N  # a capped sample of the whole map...
    assert "density shown" in page.inner_text("#map-status")  # ...over density tiles
    assert not any("/points?" in u for u in tiles_seen)
    page.screenshot(path=str(screenshot_dir / "map_tiles_overview.png"))

    # Zoom into the cluster at (8, -8): deeper tiles, every galaxy there is drawn.
    page.evaluate("LatentMapPage.fig.x_range.setv({start: 6, end: 10}); LatentMapPage.fig.y_range.setv({start: -10, end: -6}); "
                  "LatentMapPage.onRanges('map')")  # what bokeh's rangesupdate calls after a wheel zoom
    page.wait_for_function(f"() => +document.getElementById('map-canvas').dataset.tileZ > {z0}")
    page.wait_for_function("() => !document.getElementById('map-status').textContent.includes('density')")
    coords, ids = tiled_world["coords"], tiled_world["ids"]
    inside = (coords[:, 0] >= 6) & (coords[:, 0] <= 10) & (coords[:, 1] >= -10) & (coords[:, 1] <= -6)
    shown = set(page.evaluate("Array.from(LatentMapPage.src.data.id)"))
    assert {int(g) for g in ids[inside]} <= shown

    # Hover a galaxy in view: its thumbnail appears, as on small maps.
    target = int(ids[np.flatnonzero(inside)[0]])
    pos = page.evaluate(f"LatentMapPage.screenOf({target})")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.locator(f'.map-tip img[src*="/thumbs/{target}.png"]').first
    tip.wait_for()
    tip.evaluate("i => i.complete ? null : new Promise(r => i.addEventListener('load', r))")
    assert tip.evaluate("i => i.naturalWidth") == 96 and tip.is_visible()
    page.screenshot(path=str(screenshot_dir / "map_tiles_hover.png"))
    assert any("/points/" in u for u in tiles_seen) and any("/density/" in u for u in tiles_seen)
