"""Links that reproduce a view: a map URL with viewport, colour layer, mode and selection opens
exactly that view, the URL follows the view, and "Copy link" gives it.  The sky view offline:
a survey with HiPS imagery falls back to the scatter with a note (tests never reach a network)."""
import numpy as np
import pytest

from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.embeddings.models import Collection
from webapp.embeddings.services.vectors import load_embedding_set

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def world(role_groups):
    survey = make_survey(name="SDSS sample", slug="sdss-sample", n=60, size=16)
    vectors, labels = clustered_vectors(60, 8, clusters=3)
    es = make_embedding_set(survey=survey, vectors=vectors)
    coords = np.array([[-8.0, -8.0], [8.0, -8.0], [0.0, 8.0]])[labels] + np.random.default_rng(0).normal(scale=0.6, size=(60, 2))
    lm = make_latent_map(es, coords.astype(np.float32))
    return {"lm": lm, "ids": [int(i) for i in load_embedding_set(es)[0]]}


def state(page):
    return page.evaluate("""() => { const M = LatentMapPage;
      return { x: [M.fig.x_range.start, M.fig.x_range.end], y: [M.fig.y_range.start, M.fig.y_range.end],
               layer: M.layer, select: document.getElementById('colour-select').value, view: M.view,
               ids: [...M.selectedIds].sort((a, b) => a - b), legend: document.getElementById('legend').dataset.key }; }""")


def test_a_permalink_restores_the_view(page, live_server, login, make_user, world, screenshot_dir):
    user = make_user("labeler", "lara")
    ids = world["ids"]
    chosen = ids[20:26]
    link = f"/maps/{world['lm'].pk}/?x0=4&x1=12&y0=-11&y1=-5&colour=meta:mag_r&mode=both&ids={','.join(map(str, chosen))}"
    login("lara", "pw-lara", link)
    page.wait_for_selector("#map-page[data-ready='1']")
    s = state(page)
    assert s["x"] == [pytest.approx(4), pytest.approx(12)] and s["y"] == [pytest.approx(-11), pytest.approx(-5)]
    assert (s["layer"], s["select"], s["legend"], s["view"]) == ("meta:mag_r", "meta:mag_r", "meta:mag_r", "both")
    assert s["ids"] == chosen and page.text_content("#selection-count") == "6"
    page.screenshot(path=str(screenshot_dir / "permalink_restored.png"))

    # The URL follows the view: pan, change the colour, and copy the link.
    page.evaluate("LatentMapPage.centreOn(0, 8)")
    page.select_option("#colour-select", "survey")
    page.wait_for_function("() => location.search.includes('colour=survey')")
    copied = page.evaluate("LatentMapLink.copy(LatentMapPage, document.getElementById('map-status'))")
    assert "colour=survey" in copied and "x0=-4" in copied and f"ids={','.join(map(str, chosen))}" in copied
    assert page.text_content("#map-status") in ("Link copied", "Copy this link from the address bar")

    # A collection link keeps naming the collection while the selection is unchanged.
    c = Collection.objects.create(owner=user, name="arc")
    c.galaxies.set(ids[:3])
    page.goto(f"{live_server.url}/maps/{world['lm'].pk}/?collection={c.pk}&mode=map")
    page.wait_for_selector("#map-page[data-ready='1']")
    assert state(page)["ids"] == ids[:3]
    page.wait_for_function(f"() => location.search.includes('collection={c.pk}')")

    # Reopening the copied link restores it again.
    page.goto(copied)
    page.wait_for_selector("#map-page[data-ready='1']")
    s2 = state(page)
    assert s2["layer"] == "survey" and s2["ids"] == chosen and s2["x"][0] == pytest.approx(-4, abs=1e-3)


def test_sky_view_offline_falls_back_to_the_scatter(page, live_server, login, make_user, world, screenshot_dir):
    make_user("labeler", "lara")
    page.route("https://**/*", lambda route: route.abort())  # offline, whatever this machine can reach
    login("lara", "pw-lara", f"/maps/{world['lm'].pk}/?mode=sky")
    page.wait_for_selector("#map-page[data-ready='1']")
    page.wait_for_selector("#sky-imagery-note[data-state='fallback']")
    assert "showing the catalogue scatter" in page.text_content("#sky-imagery-note")
    assert page.is_hidden("#sky-imagery") and page.is_hidden("#sky-imagery-toggle")
    assert page.evaluate("LatentMapPage.sky.visible") is True
    page.screenshot(path=str(screenshot_dir / "sky_fallback.png"))
