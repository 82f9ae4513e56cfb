"""The Content-Security-Policy in Chromium: the map, labeling and anomaly pages (and a page of
bokeh plots embedded by app.js) work with no CSP violation and no console error.

A violation is caught twice: the `securitypolicyviolation` DOM event (an init script records it
before any page script runs) and Chromium's console message about it.  Re-adding an inline
<script> (or a CustomJS callback, which needs 'unsafe-eval') anywhere makes these tests fail.
"""
import numpy as np
import pytest

from tests.anomalies.factories import make_score_set
from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from tests.labeling.factories import make_task

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__cspViolations.push(
  [e.violatedDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber, e.sample].join(" | ")), true);
"""


@pytest.fixture
def groups(role_groups):
    """The role groups (tests/conftest.py), under the name these tests use."""


@pytest.fixture
def watched(page):
    """The page, with every console error, page error and CSP violation recorded."""
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" or "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def check():
        violations = page.evaluate("window.__cspViolations")
        assert violations == [] and problems == [], "\n".join(violations + problems)
    page.csp_check = check
    return page


def open_page(page, live_server, login, make_user, path):
    make_user("labeler", "lara")
    login("lara", "pw-lara", path)
    policy = page.evaluate("async p => (await fetch(p)).headers.get('content-security-policy')", path)
    assert "script-src 'self'" in policy and "'unsafe-eval'" not in policy and "script-src 'self' 'unsafe-inline'" not in policy


def test_map_page_has_no_csp_violation(watched, live_server, login, make_user, groups, screenshot_dir):
    survey = make_survey(name="Map survey", slug="mapsurvey", n=60, size=32)
    vectors, labels = clustered_vectors(60, 8, clusters=3)
    es = make_embedding_set(survey=survey, vectors=vectors)
    coords = np.array([[-8.0, -8.0], [8.0, -8.0], [0.0, 8.0]])[labels]
    lm = make_latent_map(es, (coords + np.random.default_rng(0).normal(scale=0.6, size=(60, 2))).astype(np.float32))
    open_page(watched, live_server, login, make_user, f"/maps/{lm.pk}/")
    watched.wait_for_selector("#map-canvas[data-rendered='1']")
    assert watched.eval_on_selector("#map-canvas", "e => e.dataset.pointsLoaded") == "60"
    # the bokeh events map.js hooks without CustomJS: a pan fires rangesupdate, a tap opens the panel
    target, xy = watched.evaluate("() => { const id = LatentMapPage.src.data.id[0];"
                                  " return [id, LatentMapPage.screenOf(id)]; }")
    watched.mouse.click(xy["x"], xy["y"])
    watched.wait_for_selector("#neighbour-grid .cell")
    panel_img = watched.locator(f'#side-panel img[src^="/thumbs/{target}.png"]')
    assert panel_img.count() == 1
    panel_img.evaluate("i => i.complete ? null : new Promise(r => i.addEventListener('load', r))")
    assert panel_img.evaluate("i => i.naturalWidth") > 0
    watched.screenshot(path=str(screenshot_dir / "csp_map.png"))
    watched.csp_check()


def test_labeling_page_has_no_csp_violation(watched, live_server, login, make_user, groups, screenshot_dir):
    task = make_task(name="CSP", n=20, cold_start_labels=4)
    open_page(watched, live_server, login, make_user, f"/tasks/{task.pk}/label/")
    watched.wait_for_function("() => !!document.body.dataset.galaxy && window.LSLabel.nextReady()")
    # the composite loads after the galaxy is shown: wait for it (a loaded image has a width)
    watched.wait_for_function("() => { const i = document.getElementById('composite');"
                              " return i.complete && i.naturalWidth > 0; }")
    watched.screenshot(path=str(screenshot_dir / "csp_label.png"))
    watched.csp_check()


def test_anomaly_pages_have_no_csp_violation(watched, live_server, login, make_user, groups, screenshot_dir):
    score_set, ids = make_score_set(size=32)
    open_page(watched, live_server, login, make_user, f"/anomalies/{score_set.pk}/review/")
    watched.wait_for_function("() => { const i = document.getElementById('cand-composite');"
                              " return i.complete && i.naturalWidth > 0; }")
    assert watched.evaluate("LSAnomaly.current()") in [int(i) for i in ids]
    watched.screenshot(path=str(screenshot_dir / "csp_anomaly_review.png"))
    watched.csp_check()
    # the reviewed page: a bokeh plot embedded from json_script by app.js (full BokehJS bundles)
    watched.goto(live_server.url + f"/anomalies/{score_set.pk}/reviewed/")
    watched.wait_for_function("() => LS.plotsReady && Bokeh.documents.length >= 1")
    watched.evaluate("() => LS.plotsReady")
    assert watched.evaluate("() => [...document.querySelectorAll('[data-bokeh-item]')]"
                            ".every(d => d.children.length > 0)")
    watched.screenshot(path=str(screenshot_dir / "csp_anomaly_reviewed.png"), full_page=True)
    watched.csp_check()
