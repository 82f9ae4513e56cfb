"""Browse a survey in a real browser: log in, survey list, grid thumbnails, keyboard, detail."""
import pytest

from tests.catalog.factories import make_survey

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALL_THUMBS_LOADED = "sel => { const imgs = [...document.querySelectorAll(sel)];" \
                    " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"


@pytest.fixture
def survey(role_groups):
    return make_survey(name="E2E survey", slug="e2e", n=40, size=32,
                       viewer_url_template="https://viewer.example/?ra={ra}&dec={dec}")


def test_login_browse_grid_and_open_a_galaxy(page, live_server, login, make_user, survey, screenshot_dir):
    make_user("viewer", "eve")
    login("eve", "pw-eve")

    assert page.locator("h1").inner_text() == "Surveys"
    assert page.locator(".survey-card h2").all_inner_texts() == ["E2E survey"]
    page.wait_for_function(ALL_THUMBS_LOADED, arg=".strip img")
    page.screenshot(path=str(screenshot_dir / "survey_list.png"), full_page=True)

    thumb_requests = []
    page.on("request", lambda r: thumb_requests.append(r.url) if "/thumbs/" in r.url else None)
    page.click("text=Browse 40 galaxies")
    page.wait_for_url("**/surveys/e2e/")
    assert page.locator(".galaxy-grid .cell").count() == 40
    # The 40 cells are drawn from one sprite atlas (10 x 4 cells of 96 px): one request, not 40.
    page.wait_for_function("() => document.querySelector('#galaxy-grid').dataset.atlasReady === '1'")
    atlas_url = page.locator("#galaxy-grid").get_attribute("data-atlas")
    size = page.evaluate("u => new Promise(ok => { const i = new Image(); i.onload = () => ok([i.naturalWidth,"
                         " i.naturalHeight]); i.src = u; })", atlas_url)
    assert size == [960, 384]
    assert [u.split("/thumbs/")[1].split("?")[0] for u in thumb_requests] == [atlas_url.split("/thumbs/")[1].split("?")[0]]
    assert page.locator(".galaxy-grid .cell img").count() == 0
    drawn = page.eval_on_selector_all(".galaxy-grid .cell .sprite", "els => els.map(e => {"
                                      " const s = getComputedStyle(e); return [s.backgroundImage.includes('/thumbs/atlas/'),"
                                      " e.getBoundingClientRect().width >= 96, e.getAttribute('aria-label')]; })")
    assert drawn == [[True, True, f"OBJ{i:05d}"] for i in range(40)]
    page.screenshot(path=str(screenshot_dir / "grid.png"))

    # Keyboard: "?" shows help, j j moves focus to the second galaxy, Enter opens it.
    page.keyboard.press("?")
    assert page.locator("#kbd-help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#kbd-help").is_visible()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url("**/galaxies/*/")
    assert page.locator("h1").inner_text() == "OBJ00001"
    page.wait_for_function(ALL_THUMBS_LOADED, arg=".detail-image img")
    assert page.locator(".detail-image .composite").evaluate("i => i.naturalWidth") == 320
    assert page.locator(".band-row figure").count() == 3
    assert "10:00:02.40" in page.locator(".detail-info").inner_text()  # RA 150.01 deg
    page.screenshot(path=str(screenshot_dir / "detail.png"))

    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('h1').innerText === 'OBJ00002'")
    page.keyboard.press("g")
    page.wait_for_url("**/surveys/e2e/?page=1")
    assert page.locator(".galaxy-grid .cell").count() == 40


def test_filter_and_sort_from_the_controls(page, live_server, login, make_user, survey):
    make_user("viewer", "eve")
    login("eve", "pw-eve", "/surveys/e2e/")
    page.select_option("#filter-form select[name=key]", "label")
    page.fill("#filter-form input[name=value]", "merger")
    page.click("#filter-form button[type=submit]")
    page.wait_for_url("**f=label%3Amerger")
    assert page.locator(".filter-chip").inner_text().startswith("label:merger")
    page.select_option("#sort-form select[name=sort]", "-mag_r")
    page.wait_for_url("**sort=-mag_r**")
    captions = page.locator(".galaxy-grid .cell .caption .mono").all_inner_texts()
    assert captions == [f"OBJ{i:05d}" for i in range(3, 40, 4)]  # faintest (largest mag) first
