"""benchmarks/load.py's simulated browsers (benchmarks/load_browser.py): the private cache's
decisions, the assets read from a page's HTML, the CPU of a process tree, and the load goals."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def lb(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import load_browser
    return load_browser


@pytest.mark.parametrize("header, seconds", [
    ("public, max-age=31536000, immutable", 31536000.0), ("private, max-age=60", 60.0), ("immutable", 365 * 86400.0),
    ("max-age=0", 0.0), ("private, no-cache", 0.0), ("no-store", None), ("max-age=60, no-store", None), (None, 0.0),
    ("max-age=oops", 0.0)])
def test_freshness_of_cache_control(lb, header, seconds):
    assert lb.freshness(header) == seconds


def test_a_person_does_not_refetch_what_is_fresh_and_revalidates_what_is_stale(lb):
    cache = lb.PrivateCache()
    assert cache.lookup("/thumbs/1/c-ab.png", 0.0) is None                      # never seen: fetch
    cache.store("/thumbs/1/c-ab.png", 200, {"Cache-Control": "public, max-age=31536000, immutable"}, 0.0)
    assert cache.lookup("/thumbs/1/c-ab.png", 1e6) == lb.FRESH                  # immutable: not fetched again
    cache.store("/static/app.css", 200, {"Cache-Control": "max-age=60", "ETag": '"v1"'}, 0.0)
    assert cache.lookup("/static/app.css", 59.0) == lb.FRESH
    assert cache.lookup("/static/app.css", 61.0) == '"v1"'                      # stale: If-None-Match
    cache.store("/static/app.css", 304, {"Cache-Control": "max-age=60"}, 61.0)  # a 304 renews it, keeps the ETag
    assert cache.lookup("/static/app.css", 100.0) == lb.FRESH
    assert cache.lookup("/static/app.css", 130.0) == '"v1"'
    cache.store("/thumbs/2.png", 200, {"Cache-Control": "no-cache", "ETag": '"t"'}, 0.0)
    assert cache.lookup("/thumbs/2.png", 0.0) == '"t"'                          # no-cache: always revalidated
    cache.store("/api/x", 200, {"Cache-Control": "no-store", "ETag": '"x"'}, 0.0)
    cache.store("/grid", 200, {}, 0.0)
    cache.store("/gone", 404, {"Cache-Control": "max-age=600"}, 0.0)
    assert [cache.lookup(u, 0.0) for u in ("/api/x", "/grid", "/gone")] == [None, None, None]


def test_asset_urls_are_what_the_grid_page_makes_a_browser_fetch(lb):
    html = """<html><head><link rel="stylesheet" href="/static/css/app.css"><link rel="icon" href="/favicon.ico">
    <script src="/static/js/app.js"></script></head><body>
    <div class="grid sprite-grid" data-atlas="/thumbs/atlas/abc.jpg?size=96&amp;ids=1,2"
         style="--atlas: url('/thumbs/atlas/abc.jpg?size=96&amp;ids=1,2'); --atlas-size: 200% 100%">
    <span class="sprite" style="background-position: 0% 0%"></span></div>
    <img src="/thumbs/7/composite-96-ff.png"><img src="data:image/png;base64,AAAA"><img src="https://elsewhere/x.png">
    <script src="/static/js/app.js"></script></body></html>"""
    urls = lb.asset_urls(html)
    assert urls == ["/static/css/app.css", "/static/js/app.js", "/thumbs/atlas/abc.jpg?size=96&ids=1,2",
                    "/thumbs/7/composite-96-ff.png"]
    assert [lb.asset_kind(u) for u in urls] == ["static", "static", "atlas", "thumbnail"]


def test_tree_cpu_seconds_counts_a_busy_child(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import load
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while load.tree_cpu_seconds(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 0.25 <= load.tree_cpu_seconds(child.pid) < 5
        assert load.tree_cpu_seconds(os.getpid()) >= load.tree_cpu_seconds(child.pid)   # the child is in our tree
    finally:
        child.kill()
        child.wait()


def test_load_goals_judge_every_endpoint_of_issue_16(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import goals
    rows = [{"endpoint": e, "p95_ms": v} for e, v in [("label: next", 150.0), ("label: post", 90.0),
                                                       ("neighbours", 40.0), ("map points", 250.0),
                                                       ("thumbnail", 20.0), ("atlas", 120.0)]]
    got = goals.load({"rows": rows, "errors": 0, "labels_lost": 0, "capacity": {"users_meeting_goals": 100}})
    assert {k: v["met"] for k, v in got.items()} == {
        "p95_ms[label: next]": True, "p95_ms[label: post]": True, "p95_ms[neighbours]": True,
        "p95_ms[map points]": False, "p95_ms[thumbnail]": True, "p95_ms[atlas]": False,
        "labels_lost": True, "errors": True, "capacity_users": True}
    assert got["p95_ms[atlas]"]["target"] == "< 100" and got["p95_ms[map points]"]["target"] == "< 200"
