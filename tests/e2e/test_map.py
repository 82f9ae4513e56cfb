"""The latent map in Chromium: hover shows the cutout, a click shows 12 neighbours, a lasso
saves a collection and sends the group to a labeling task, keyboard shortcuts work."""
import numpy as np
import pytest

from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.embeddings.models import Collection
from webapp.embeddings.services import search
from webapp.embeddings.services.vectors import load_embedding_set

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CENTRES = np.array([[-8.0, -8.0], [8.0, -8.0], [0.0, 8.0]])


@pytest.fixture
def world(role_groups):
    survey = make_survey(name="Map survey", slug="mapsurvey", n=60, size=32)
    vectors, labels = clustered_vectors(60, 8, clusters=3)
    es = make_embedding_set(survey=survey, vectors=vectors)
    coords = CENTRES[labels] + np.random.default_rng(0).normal(scale=0.6, size=(60, 2))
    lm = make_latent_map(es, coords.astype(np.float32))
    from tests.labeling.factories import make_task
    task = make_task(name="Morphology", surveys=[survey], embedding_set=es)
    search.forget_cached_indexes()
    ids = np.asarray(load_embedding_set(es)[0])
    return {"lm": lm, "es": es, "ids": ids, "labels": labels, "task": task}


def open_map(page, live_server, login, make_user, world):
    make_user("labeler", "lara")
    login("lara", "pw-lara", f"/maps/{world['lm'].pk}/")
    page.wait_for_selector("#map-canvas[data-rendered='1']")
    assert page.eval_on_selector("#map-canvas", "e => e.dataset.pointsLoaded") == "60"


def test_hover_click_lasso_collection_and_labeling(page, live_server, login, make_user, world, screenshot_dir):
    open_map(page, live_server, login, make_user, world)
    ids, labels = world["ids"], world["labels"]
    target = int(ids[np.flatnonzero(labels == 2)[0]])

    # Hover: the tooltip shows the galaxy's thumbnail image.
    pos = page.evaluate(f"LatentMapPage.screenOf({target})")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.locator(f'.map-tip img[src*="/thumbs/{target}.png"]').first  # bokeh tooltips live in a shadow root
    tip.wait_for()
    tip.evaluate("i => i.complete ? null : new Promise(r => i.addEventListener('load', r))")
    assert tip.evaluate("i => i.naturalWidth") == 96 and tip.is_visible()
    page.screenshot(path=str(screenshot_dir / "map_hover.png"))

    # Click: the side panel lists the 12 nearest neighbours with links to their pages.
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_selector("#neighbour-grid .cell")
    links = page.eval_on_selector_all("#neighbour-grid .cell", "cells => cells.map(c => c.getAttribute('href'))")
    assert links == [f"/galaxies/{r['id']}/" for r in search.nearest(world["es"], target, 12)]
    assert page.locator("#side-panel .dist").count() == 12
    # The panel leaves the map's bokeh toolbar uncovered (its tools stay usable).
    assert page.evaluate("""() => document.getElementById('side-panel').getBoundingClientRect().top >=
        Bokeh.index.find_one(LatentMapPage.fig.toolbar).el.getBoundingClientRect().bottom - 1""")
    page.screenshot(path=str(screenshot_dir / "map_neighbours.png"))
    page.keyboard.press("Escape")
    assert page.locator("#side-panel").is_hidden()

    # Lasso (keyboard "l") around the cluster at (8, -8): exactly its 20 galaxies are selected.
    page.keyboard.press("l")
    cluster = [int(g) for g in ids[labels == 1]]
    pts = [page.evaluate(f"LatentMapPage.screenOf({g})") for g in cluster]
    cx, cy = np.mean([p["x"] for p in pts]), np.mean([p["y"] for p in pts])
    radius = max(np.hypot(p["x"] - cx, p["y"] - cy) for p in pts) + 15
    page.mouse.move(cx + radius, cy)
    page.mouse.down()
    for a in np.linspace(0, 2 * np.pi, 24):
        page.mouse.move(cx + radius * np.cos(a), cy + radius * np.sin(a), steps=2)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('selection-count').textContent === '20'")
    assert page.locator("#selection-grid .cell").count() == 20
    # The drawer's 20 thumbnails come from one sprite atlas, not 20 image requests
    page.wait_for_function("() => document.getElementById('selection-grid').classList.contains('sprite-grid')")
    drawer = page.evaluate("""() => { const g = document.getElementById('selection-grid');
        return {atlas: getComputedStyle(g).getPropertyValue('--atlas'), imgs: g.querySelectorAll('img').length,
                positions: [...g.querySelectorAll('.sprite')].map(s => s.style.backgroundPosition),
                broken: g.classList.contains('atlas-broken')}; }""")
    assert "/thumbs/atlas/" in drawer["atlas"] and drawer["imgs"] == 0 and not drawer["broken"]
    assert len(set(drawer["positions"])) == 20 and all(drawer["positions"])

    page.fill("#collection-name", "Right-hand cluster")
    page.click("#add-to-collection")
    page.wait_for_function("() => document.getElementById('selection-toast').textContent.includes('Added 20')")
    saved = Collection.objects.get(name="Right-hand cluster")
    assert sorted(saved.galaxies.values_list("id", flat=True)) == sorted(cluster)
    assert saved.owner.username == "lara"

    page.select_option("#task-select", str(world["task"].pk))
    page.click("#send-to-task")
    page.wait_for_function("() => document.getElementById('selection-toast').textContent.includes('first in the queue')")
    from webapp.labeling.models import QueueItem
    assert sorted(QueueItem.objects.filter(task=world["task"], source="manual").values_list("galaxy_id", flat=True)) == sorted(cluster)
    page.screenshot(path=str(screenshot_dir / "map_selection.png"))

    page.keyboard.press("Escape")
    assert page.locator("#selection").is_hidden()


def test_shortcuts_colour_menu_mosaic_and_sky_view(page, live_server, login, make_user, world, screenshot_dir):
    open_map(page, live_server, login, make_user, world)
    assert page.locator("#kbd-hint").is_visible() and "lasso" in page.inner_text("#kbd-hint")
    assert page.get_attribute("#legend", "data-key") == "meta:label"
    page.select_option("#colour-select", "meta:mag_r")
    page.wait_for_function("() => document.getElementById('legend').dataset.key === 'meta:mag_r'")
    assert page.evaluate("LatentMapPage.colorbar.visible") is True
    page.keyboard.press("m")
    page.wait_for_function("() => LatentMapPage.overlay.data.url.length === 1 && LatentMapPage.overlay.data.url[0].includes('/mosaic')")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshot_dir / "map_mosaic.png"))
    assert page.evaluate("Number.isNaN(LatentMapPage.src.data.ra[0])")  # positions are fetched on demand
    page.keyboard.press("s")
    assert page.get_attribute("#map-page", "data-view") == "both"
    page.wait_for_function("() => Number.isFinite(LatentMapPage.src.data.ra[0])")
    # Both figures keep their tools in the toolbar after the re-layout (not folded into the "⋮" menu).
    page.wait_for_function("() => document.getElementById('map-page').dataset.view === 'both'")
    page.wait_for_timeout(500)
    assert page.locator(".bk-tool-icon-lasso-select").count() == 2
    page.keyboard.press("?")
    assert page.locator("#kbd-help").is_visible()
    page.keyboard.press("Escape")
    # Linked selection: a box on the sky selects the same galaxies on the map (one shared source).
    page.evaluate("LatentMapPage.src.selected.indices = [0, 1, 2]")
    page.wait_for_function("() => document.getElementById('selection-count').textContent === '3'")
    page.screenshot(path=str(screenshot_dir / "map_both.png"))
    # Sky view alone: the legend sits clear of the Dec tick labels.
    page.keyboard.press("s")
    assert page.get_attribute("#map-page", "data-view") == "sky"
    page.wait_for_timeout(500)
    assert page.evaluate("""() => { const v = Bokeh.index.find_one(LatentMapPage.sky);
        return document.getElementById('legend').getBoundingClientRect().left >=
               v.el.getBoundingClientRect().left + v.frame.bbox.left; }""")


def test_galaxy_page_neighbour_thumbnails_stay_square(page, live_server, login, make_user, world):
    make_user("viewer", "vic")
    target = int(world["ids"][0])
    login("vic", "pw-vic", f"/galaxies/{target}/")
    cells = page.locator("#neighbours-panel .cell .sprite")  # drawn from one sprite atlas
    cells.first.wait_for()
    assert cells.count() == 12
    page.wait_for_function("() => document.querySelector('#neighbours-panel .sprite-grid').dataset.atlasReady === '1'")
    sizes = cells.evaluate_all("els => els.map(i => [i.getBoundingClientRect().width, i.getBoundingClientRect().height])")
    assert all(w > 100 and abs(w - h) < 1 for w, h in sizes), sizes  # six to a row: wider than 96 px, and square
    images = cells.evaluate_all("els => new Set(els.map(e => getComputedStyle(e).backgroundImage)).size")
    assert images == 1
