"""SAMP round trip in Chromium against astropy's hub with the Web Profile on 127.0.0.1:21012.

(a) The map page sends its selection: a Python client on the hub receives table.load.votable,
    fetches the signed URL without any cookie and reads the ids and RA/Dec.
(b) The Python client sends a table with only RA/Dec (as TOPCAT's subset might be): the page
    fetches it through the hub's URL translator and the matching galaxies become the selection.
Also: the galaxy page's "Point at" and "Send cutout", and the clear message when no hub runs.
The hub's lockfile lives in the test's tmp dir (HOME and SAMP_HUB point there too), so a real
hub on this machine is never touched; the test skips when port 21012 is taken.
"""
import io
import socket
import threading
import time
import urllib.request
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from astropy.io.votable import from_table, parse_single_table
from astropy.table import Table

from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.embeddings.services.vectors import load_embedding_set

SAMPJS = Path(__file__).resolve().parents[2] / "node_modules" / "sampjs"
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not SAMPJS.is_dir(), reason="sampjs is not installed: run `make npm` (make test does)")]
WEB_PORT = 21012


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def world(role_groups):
    survey = make_survey(name="SAMP survey", slug="sampsurvey", n=40, size=16)
    vectors, labels = clustered_vectors(40, 8, clusters=2)
    es = make_embedding_set(survey=survey, vectors=vectors)
    coords = np.array([[-6.0, 0.0], [6.0, 0.0]])[labels] + np.random.default_rng(0).normal(scale=0.5, size=(40, 2))
    lm = make_latent_map(es, coords.astype(np.float32))
    return {"lm": lm, "es": es, "ids": [int(i) for i in load_embedding_set(es)[0]]}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    if not port_free(WEB_PORT):
        pytest.skip(f"port {WEB_PORT} is taken (a SAMP hub is running here?)")
    from astropy.samp import SAMPHubServer, SAMPIntegratedClient
    from astropy.samp.hub import WebProfileDialog

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:file://{tmp_path}/.samp")

    class AutoAccept(WebProfileDialog):  # the user's "yes" in the hub's consent dialog
        running = True

        def show_dialog(self, *args):
            self.consent()

        def poll(self):
            while self.running:
                self.handle_queue()
                time.sleep(0.05)

    dialog = AutoAccept()
    thread = threading.Thread(target=dialog.poll, daemon=True)
    thread.start()
    server = SAMPHubServer(web_profile=True, web_profile_dialog=dialog, lockfile=str(tmp_path / ".samp"),
                           addr="127.0.0.1", web_port=WEB_PORT, pool_size=2)
    server.start()
    client = SAMPIntegratedClient(name="pytest TOPCAT")
    client.connect(hub=server, pool_size=1)
    received = []
    for mtype in ("table.load.votable", "image.load.fits", "coord.pointAt.sky"):
        client.bind_receive_notification(mtype, lambda pk, sender, mt, params, extra: received.append((mt, params)))
        client.bind_receive_call(mtype, lambda pk, sender, msg_id, mt, params, extra: (
            received.append((mt, params)), client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})))
    yield {"server": server, "client": client, "received": received}
    client.disconnect()
    server.stop()
    dialog.running = False


def wait_for(predicate, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def open_map(page, live_server, login, make_user, world):
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    make_user("labeler", "lara")
    login("lara", "pw-lara", f"/maps/{world['lm'].pk}/")
    page.wait_for_selector("#map-page[data-ready='1']")


def test_no_hub_gives_a_clear_message(page, live_server, login, make_user, world):
    if not port_free(WEB_PORT):
        pytest.skip(f"port {WEB_PORT} is taken")
    open_map(page, live_server, login, make_user, world)
    page.evaluate(f"LatentMapPage.P.selectIds({world['ids'][:3]})")
    page.click("#samp-send")
    wait_for(lambda: "No SAMP hub" in page.text_content("#samp-status"))
    assert page.text_content("#samp-status") == "No SAMP hub found at 127.0.0.1:21012 — start TOPCAT or Aladin"
    assert page.evaluate("LatentMapPage.selectedIds.size") == 3  # nothing broke
    assert page.errors == []


def test_samp_round_trip(page, live_server, login, make_user, world, hub, tmp_path, screenshot_dir):
    ids = world["ids"]
    open_map(page, live_server, login, make_user, world)

    # (a) page -> hub -> client: the selection as a VOTable at a signed URL
    chosen = ids[5:12]
    page.evaluate(f"LatentMapPage.P.selectIds({chosen})")
    page.click("#samp-send")
    mtype, params = wait_for(lambda: next((r for r in hub["received"] if r[0] == "table.load.votable"), None))
    assert params["url"].startswith(live_server.url + "/samp/t/")
    with urllib.request.urlopen(params["url"]) as reply:  # TOPCAT has no session cookie
        table = parse_single_table(io.BytesIO(reply.read())).to_table()
    assert table["galaxy_id"].tolist() == sorted(chosen)
    assert np.allclose(table["ra"], [150.0 + 0.01 * (g - ids[0]) for g in sorted(chosen)])
    assert np.allclose(table["dec"], [2.0 - 0.01 * (g - ids[0]) for g in sorted(chosen)])
    wait_for(lambda: page.text_content("#samp-status").startswith("Sent 7 rows"))

    # (b) client -> hub -> page: a subset with RA/Dec only, served by a tiny HTTP server
    subset = [ids[i] for i in (1, 2, 30, 31, 39)]
    body = io.BytesIO()
    from_table(Table({"RA": [150.0 + 0.01 * (g - ids[0]) for g in subset],
                      "DEC": [2.0 - 0.01 * (g - ids[0]) for g in subset]})).to_xml(body)

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-votable+xml")
            self.end_headers()
            self.wfile.write(body.getvalue())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = hub["client"]
        wait_for(lambda: client.get_subscribed_clients("table.load.votable"))
        client.notify_all({"samp.mtype": "table.load.votable", "samp.params": {
            "url": f"http://127.0.0.1:{server.server_port}/subset.vot", "name": "TOPCAT subset"}})
        # polled from here: wait_for_function's string form needs eval, which the CSP forbids
        wait_for(lambda: page.evaluate("LatentMapPage.selectedIds.size") == len(subset), timeout=20)
    finally:
        server.shutdown()
    assert sorted(page.evaluate("[...LatentMapPage.selectedIds]")) == sorted(subset)
    assert page.text_content("#selection-count") == "5"
    assert "5 of 5 rows from TOPCAT subset selected (by position)" in page.text_content("#samp-status")
    assert f"ids={','.join(map(str, sorted(subset)))}" in page.url  # the link follows the selection
    page.screenshot(path=str(screenshot_dir / "samp_round_trip.png"))

    # the galaxy page: Point at and Send cutout
    hub["received"].clear()
    page.goto(f"{live_server.url}/galaxies/{ids[4]}/")
    page.click("#samp-point")
    _, point = wait_for(lambda: next((r for r in hub["received"] if r[0] == "coord.pointAt.sky"), None))
    assert (float(point["ra"]), float(point["dec"])) == (pytest.approx(150.04), pytest.approx(1.96))
    page.click("#samp-cutout")
    _, image = wait_for(lambda: next((r for r in hub["received"] if r[0] == "image.load.fits"), None))
    with urllib.request.urlopen(image["url"]) as reply:
        assert reply.read(6) == b"SIMPLE"
    assert page.errors == []
