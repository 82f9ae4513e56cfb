"""How long does a survey grid page with its 100 thumbnails take to load?

Starts nothing itself: point it at a running server (gunicorn or runserver) and
a user.  It logs in through the login form, then fetches the grid page and all
of its thumbnails concurrently (like a browser: a few connections in parallel)
and reports the total wall time, first "cold" (thumbnail cache empty: pass
--clear-cache DATA_DIR/cache/thumbs and restart the server for a fully cold
process) and then "warm" (PNG files cached on disk).

    python benchmarks/grid_load.py --url http://127.0.0.1:8000/surveys/sim-sdss/ \
        --username demo --password demo-pass [--clear-cache var/cache/thumbs]
"""
from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import shutil
import statistics
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import print_table, write_result

THUMB_RE = re.compile(r'<img src="(/thumbs/\d+\.png\?[^"]+)"')
TARGET_SECONDS = 1.0  # a grid of 100 thumbnails must load in under a second


def login(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/accounts/login/").read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    body = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": token, "next": "/"}).encode()
    request = urllib.request.Request(base + "/accounts/login/", data=body, headers={"Referer": base + "/accounts/login/"})
    response = opener.open(request)
    if "/accounts/login" in response.geturl():
        raise SystemExit("login failed: check --username/--password")
    return opener


def fetch(opener, url: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    with opener.open(url) as response:
        data = response.read()
        status = response.status
    return time.perf_counter() - start, status, len(data)


def load_grid(opener, base: str, grid_url: str, threads: int) -> dict:
    """Grid HTML, then every thumbnail on it concurrently; times in seconds."""
    start = time.perf_counter()
    html_start = time.perf_counter()
    with opener.open(grid_url) as response:
        html = response.read().decode()
    html_seconds = time.perf_counter() - html_start
    thumbs = [base + src.replace("&amp;", "&") for src in THUMB_RE.findall(html)]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda u: fetch(opener, u), thumbs))
    total = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "total_s": round(total, 4), "html_s": round(html_seconds, 4), "thumbnails": len(thumbs),
        "thumb_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "thumb_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "bytes": sum(r[2] for r in results), "errors": sum(r[1] != 200 for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="grid page URL, e.g. http://127.0.0.1:8000/surveys/sim-sdss/")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--threads", type=int, default=6, help="concurrent connections (browsers use ~6 per host)")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm repetitions (the median is reported)")
    parser.add_argument("--warmup", type=int, default=4,
                        help="grid-HTML fetches (concurrent) before the cold run, so every server worker has imported "
                             "the app: 'cold' then means an empty thumbnail cache, not a process start-up")
    parser.add_argument("--clear-cache", type=Path, help="delete this thumbnail cache dir before the cold run")
    parser.add_argument("--server", default="", help="free text describing the server, stored in the result")
    parser.add_argument("--quick", action="store_true", help="one warm run")
    args = parser.parse_args()
    if not (args.url and args.username and args.password):
        # `make benchmarks` runs every script with --quick and no server: say so, don't fail.
        print("grid_load: skipped, it needs --url, --username and --password of a running server")
        return
    parts = urllib.parse.urlsplit(args.url)
    base = f"{parts.scheme}://{parts.netloc}"
    if args.clear_cache and args.clear_cache.exists():
        shutil.rmtree(args.clear_cache)
    opener = login(base, args.username, args.password)
    with ThreadPoolExecutor(max(args.warmup, 1)) as pool:
        list(pool.map(lambda _: fetch(opener, args.url), range(args.warmup)))
    cold = load_grid(opener, base, args.url, args.threads)
    warm_runs = [load_grid(opener, base, args.url, args.threads) for _ in range(1 if args.quick else args.warm_runs)]
    warm = sorted(warm_runs, key=lambda r: r["total_s"])[len(warm_runs) // 2]
    rows = [[name, r["thumbnails"], r["html_s"], r["total_s"], r["thumb_p50_ms"], r["thumb_max_ms"], r["errors"],
             "yes" if r["total_s"] < TARGET_SECONDS else "NO"] for name, r in (("cold", cold), ("warm", warm))]
    print_table(rows, ["run", "thumbs", "html s", "total s", "thumb p50 ms", "thumb max ms", "errors", "< 1 s"])
    path = write_result("grid_load", {
        "config": {"url": args.url, "threads": args.threads, "warm_runs": len(warm_runs), "warmup_html_fetches": args.warmup,
                   "cleared_cache": bool(args.clear_cache), "server": args.server},
        # The client shares the machine with the server (and, here, with other work): record the load.
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "cold": cold, "warm": warm, "warm_runs": warm_runs, "target_seconds": TARGET_SECONDS})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
