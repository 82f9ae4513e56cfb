"""Latent map: UMAP seconds, and the map page's bytes and time to first render in Chromium.

    python benchmarks/map.py            # UMAP at 1e4 and 1e5; page at 1e5 (and at 1e6, density mode)
    python benchmarks/map.py --quick    # UMAP at 1e4; page at 1e4
    python benchmarks/map.py --no-1e6   # skip the million-point page (its site takes minutes to build)

UMAP: ml.projection.fit_umap with the UMAPConfig the `umap` job uses (seed 0, so umap runs
single-threaded and reproducibly) on synthetic clustered 128-d vectors (the generator of
benchmarks/search.py: N/1000 Gaussian clusters in a 32-d latent space).  numba's one-off
compilation is paid on a warm-up first (300 and 5,000 rows) and reported separately.

Page: a throw-away site on the embedded default (SQLite, gunicorn --workers 2 --threads 8,
as `make demo`) holding the map computed above (1e6: a synthetic 2-D layout, since UMAP at
1e6 takes ~10 min here).  Headless Debian Chromium (Playwright, same flags as the e2e
tests) logs in and opens /maps/<id>/; "first render" is the time from navigation start
until map.js has handed the points to bokeh and two animation frames have passed, read
from window.__mapFirstRender; "wall" is measured by the client from the moment it asks for
the page (server time and transfer included), and the goal (< 3 s) is judged on it.  In
browsers whose WebGL is software-only (as here: no GPU) the page draws with bokeh's canvas
renderer (about twice as fast there); a forced-WebGL load (?backend=webgl) is reported too.  Bytes are the transfer sizes of every response of
the page load (HTML, JS, CSS, points), from the browser's resource timing.  The first load
after the server starts is "cold" (coordinates and catalogue read from disk/DB); later ones
warm.  Numbers depend heavily on other load on the 2 shared cores (recorded as loadavg).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common import print_table, write_result  # noqa: F401  (sets sys.path)
from search import Server, build_site, clustered_vectors  # the throw-away site helpers
from ml.projection import UMAPConfig, fit_umap

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
GOAL_FIRST_RENDER_S = 3.0


def umap_seconds(sizes: list[int], dim: int) -> tuple[list[dict], dict[int, np.ndarray]]:
    cfg = UMAPConfig()
    t0 = time.perf_counter()
    # umap compiles its numba code on first use in a process; pynndescent's (N >= 4096) too.
    fit_umap(clustered_vectors(300, dim, n_clusters=5), UMAPConfig(n_epochs=20))
    fit_umap(clustered_vectors(5000, dim, n_clusters=5), UMAPConfig(n_epochs=10))
    rows = [{"N": 5300, "what": "warm-up: numba compile + two short fits (once per process)",
             "seconds": time.perf_counter() - t0}]
    coords = {}
    for n in sizes:
        x = clustered_vectors(n, dim, n_clusters=max(5, n // 1000))
        t0 = time.perf_counter()
        _, coords[n] = fit_umap(x, cfg)
        rows.append({"N": n, "what": f"fit_umap, D={dim}, seed={cfg.seed}, n_neighbors={cfg.n_neighbors}",
                     "seconds": time.perf_counter() - t0})
        print(f"UMAP {n:,}: {rows[-1]['seconds']:.1f} s", flush=True)
    return rows, coords


def synthetic_layout(n: int, seed: int = 0) -> np.ndarray:
    """(n, 2) float32 map-like layout: uneven Gaussian blobs in [-10, 10]^2."""
    rng = np.random.default_rng(seed)
    k = 60
    centres, widths = rng.uniform(-8, 8, (k, 2)), rng.uniform(0.2, 1.2, k)
    lab = rng.choice(k, n, p=rng.dirichlet(np.full(k, 1.5)))
    return (centres[lab] + widths[lab, None] * rng.normal(size=(n, 2))).astype(np.float32)


def page_load(base: str, map_id: int, runs: int, query: str = "") -> list[dict]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for run in range(runs):
            context = browser.new_context(viewport={"width": 1400, "height": 900})  # empty cache every run
            page = context.new_page()
            page.goto(base + "/accounts/login/")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", "bench-pass")
            page.click("button[type=submit]")
            page.wait_for_load_state()
            finished = []
            page.on("requestfinished", lambda request: finished.append(request))  # every transfer of the page load
            t0 = time.perf_counter()
            page.goto(f"{base}/maps/{map_id}/{query}", wait_until="commit")
            page.wait_for_selector("#map-canvas[data-rendered='1']", timeout=120_000)
            wall_ms = (time.perf_counter() - t0) * 1000
            stats = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const res = performance.getEntriesByType('resource');
                const pts = res.filter(r => r.name.includes('/points'));
                const view = Bokeh.index.find_one(LatentMapPage.fig);
                return {first_render_ms: window.__mapFirstRender, html_bytes: nav.transferSize,
                        bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
                        points_bytes: pts.reduce((a, r) => a + r.transferSize, 0),
                        points_ms: pts.length ? pts[0].responseEnd - pts[0].startTime : null,
                        requests: res.length + 1, shown: +document.getElementById('map-canvas').dataset.pointsLoaded,
                        webgl_context: !!(view.canvas_view && view.canvas_view.webgl)}; }""")
            sizes = [r.sizes() for r in finished]
            stats["bytes"] = sum(z["responseBodySize"] + z["responseHeadersSize"] for z in sizes)
            stats["requests"] = len(sizes)
            stats["run"] = ("cold" if run == 0 else f"warm {run}") + (f" {query}" if query else "")
            stats["wall_ms"] = round(wall_ms)  # from the moment the client asks for the page
            stats["backend"] = page.evaluate("LatentMapPage.backend")
            out.append(stats)
            context.close()
        browser.close()
    return out


def page_benchmark(n: int, coords: np.ndarray, dim: int, runs: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        t0 = time.perf_counter()
        site = build_site(Path(tmp), clustered_vectors(n, dim, n_clusters=max(5, n // 1000)), coords, index=False)
        print(f"site with {n:,} galaxies built in {time.perf_counter() - t0:.0f} s", flush=True)
        with Server(Path(tmp)) as server:
            loads = page_load(server.base, site["map_id"], runs)
            loads += page_load(server.base, site["map_id"], 2, "?backend=webgl")[1:]  # forced WebGL, warm
    for r in loads:
        r.update({"N": n, "first_render_s": round(r["first_render_ms"] / 1000, 3), "wall_s": round(r["wall_ms"] / 1000, 3),
                  "MB": round(r["bytes"] / 1e6, 2),
                  "points_MB": round(r["points_bytes"] / 1e6, 2),
                  "meets_goal": r["wall_ms"] / 1000 < GOAL_FIRST_RENDER_S})
    return loads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="UMAP at 1e4, page at 1e4")
    ap.add_argument("--no-1e6", action="store_true", help="skip the million-point page")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3, help="page loads per size (first one cold)")
    args = ap.parse_args()
    sizes = [10_000] if args.quick else [10_000, 100_000]
    umap_rows, coords = umap_seconds(sizes, args.dim)
    print_table(umap_rows, ["N", "what", "seconds"])
    page_rows = []
    if CHROMIUM.exists():
        page_n = sizes[-1]
        page_rows += page_benchmark(page_n, coords[page_n], args.dim, args.runs)
        if not args.quick and not args.no_1e6:
            page_rows += page_benchmark(1_000_000, synthetic_layout(1_000_000), 16, args.runs)
        print_table(page_rows, ["N", "run", "backend", "first_render_s", "wall_s", "MB", "points_MB", "requests",
                                "shown", "meets_goal"])
    else:
        print(f"map page: skipped, {CHROMIUM} is missing")
    path = write_result("map_quick" if args.quick else "map", {
        "quick": args.quick, "umap": umap_rows, "page": page_rows, "goal_first_render_s": GOAL_FIRST_RENDER_S,
        "umap_config": UMAPConfig().__dict__, "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "chromium_args": CHROMIUM_ARGS})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
