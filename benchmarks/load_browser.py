"""The simulated people of benchmarks/load.py, doing what a browser does (issue 16).

* ``PrivateCache``: one person's HTTP cache.  A 200 with ``Cache-Control: max-age=N`` (or
  ``immutable``) is not fetched again by that person for N seconds; a stale or ``no-cache``
  entry with an ETag is revalidated with ``If-None-Match`` (a 304 is a request, and renews it);
  ``no-store`` is never kept.  ``private`` is fine: this is the person's own cache.
* ``asset_urls(html)``: the same-site images, scripts, stylesheets and CSS ``url(...)`` backgrounds
  (the grid's sprite atlas) a page's HTML makes a browser fetch.
* ``Browser`` and the ``act_*`` functions: one person's session and actions; ``client_process``
  runs a share of the people in a process of its own at nice 19.

Kept apart from load.py (the stack and the measurement) so that the people's processes import
no Django, and tests/deploy/test_load_browser.py checks the cache and the parser without a server.
"""
from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser

YEAR_S = 365 * 24 * 3600.0
FRESH = "fresh"                 # PrivateCache.lookup: serve from the cache, no request
WEIGHTS = {"label": 4, "neighbours": 2, "map_points": 1, "grid": 1}
PASSWORD = "load-test-password"
PREFETCH, LOW_WATER = 10, 4          # static/js/labeling.js: galaxies per queue request, refill below this
CLIENT_NICE = 19                     # the load generator yields the cores to the server
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)['"]?\s*\)""")


def freshness(cache_control: str | None) -> float | None:
    """Seconds a response stays fresh in a private cache; 0: keep it only to revalidate;
    None: do not keep it (no-store)."""
    directives = {}
    for part in (cache_control or "").lower().split(","):
        key, _, value = part.strip().partition("=")
        if key:
            directives[key] = value.strip().strip('"')
    if "no-store" in directives:
        return None
    if "no-cache" in directives:
        return 0.0
    if "max-age" in directives:
        try:
            return max(0.0, float(directives["max-age"]))
        except ValueError:
            return 0.0
    return YEAR_S if "immutable" in directives else 0.0


@dataclass
class Entry:
    fresh_until: float           # monotonic seconds
    etag: str | None


class PrivateCache:
    """One person's cache, keyed by URL path (shared by the few threads of that person)."""

    def __init__(self):
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def lookup(self, url: str, now: float) -> str | None:
        """FRESH (do not fetch), an ETag to send as If-None-Match, or None (plain fetch)."""
        with self._lock:
            entry = self._entries.get(url)
        if entry is None:
            return None
        if now < entry.fresh_until:
            return FRESH
        return entry.etag

    def store(self, url: str, status: int, headers, now: float) -> None:
        """Remember a GET's response (200, or the 304 that renewed an entry)."""
        if status not in (200, 304):
            return
        seconds = freshness(headers.get("Cache-Control"))
        with self._lock:
            old = self._entries.get(url)
            etag = headers.get("ETag") or (old.etag if old else None)
            if seconds is None or (status == 304 and old is None):
                self._entries.pop(url, None)
            elif seconds > 0 or etag:
                self._entries[url] = Entry(now + seconds, etag)
            else:
                self._entries.pop(url, None)


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("img", "script") and a.get("src"):
            self.urls.append(a["src"])
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.urls.append(a["href"])
        if a.get("style"):
            self.urls += CSS_URL.findall(a["style"])


def asset_urls(html: str) -> list[str]:
    """Same-site paths of what the page loads, in document order, each once."""
    parser = _Assets()
    parser.feed(html)
    out: list[str] = []
    for url in parser.urls:
        if url.startswith("/") and not url.startswith("//") and url not in out:
            out.append(url)
    return out


def asset_kind(url: str) -> str:
    """The load table's row for an asset: atlas, thumbnail, static or other."""
    if url.startswith("/thumbs/atlas/"):
        return "atlas"
    if url.startswith("/thumbs/"):
        return "thumbnail"
    return "static" if url.startswith("/static/") else "other asset"


# ----------------------------------------------------------------- the people (client processes)

class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.ms = defaultdict(list)
        self.errors = defaultdict(list)
        self.cache_hits = defaultdict(int)   # endpoint -> requests a browser would not have sent
        self.labels_ok = defaultdict(int)    # username -> labels that got 201

    def add(self, endpoint: str, ms: float, error: str | None = None):
        with self.lock:
            self.ms[endpoint].append(ms)
            if error:
                self.errors[endpoint].append(error)

    def hit(self, endpoint: str):
        with self.lock:
            self.cache_hits[endpoint] += 1

    def as_dict(self) -> dict:
        return {"ms": dict(self.ms), "errors": dict(self.errors), "cache_hits": dict(self.cache_hits),
                "labels_ok": dict(self.labels_ok)}


class Browser:
    """One logged-in person: a requests session, a private cache (None: --no-cache) and a few
    threads for images, as a browser fetches a few at a time."""

    def __init__(self, base: str, session, rec: Recorder, cache: PrivateCache | None):
        self.base, self.session, self.rec, self.cache = base, session, rec, cache
        self.pool = ThreadPoolExecutor(4)
        self.held: list[dict] = []           # the labeling page's local queue

    def get(self, endpoint: str, path: str, ok=(200,)):
        headers = {}
        if self.cache is not None:
            state = self.cache.lookup(path, time.monotonic())
            if state == FRESH:
                self.rec.hit(endpoint)
                return None
            if state:
                headers["If-None-Match"], ok = state, (*ok, 304)
        response = self.timed(endpoint, lambda: self.session.get(self.base + path, headers=headers, timeout=30), ok)
        if response is not None and self.cache is not None:
            self.cache.store(path, response.status_code, response.headers, time.monotonic())
        return response

    def fetch_all(self, paths, endpoint=None):
        list(self.pool.map(lambda path: self.get(endpoint or asset_kind(path), path), paths))

    def timed(self, endpoint: str, call, ok=(200,)):
        start = time.perf_counter()
        try:
            response = call()
        except Exception as exc:  # connection refused/reset: an error for the table, not a crash
            self.rec.add(endpoint, (time.perf_counter() - start) * 1000, exc.__class__.__name__)
            return None
        error = None if response.status_code in ok else f"HTTP {response.status_code}"
        self.rec.add(endpoint, (time.perf_counter() - start) * 1000, error)
        return response


def login(base: str, username: str):
    import requests
    session = requests.Session()
    session.get(base + "/accounts/login/", timeout=60)
    response = session.post(base + "/accounts/login/", timeout=60, data={
        "username": username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": base + "/accounts/login/"})
    if "sessionid" not in session.cookies:
        raise SystemExit(f"login failed for {username}: HTTP {response.status_code}")
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": base + "/"})
    return session


def item_images(item: dict) -> list[str]:
    """What labeling.js preloadItem() preloads for a queue item: the stage image and the reply's
    sprite atlas (its thumbnail and band images), else the single images."""
    if item.get("strip"):
        return [item["image_url"], item["strip"]["url"]]
    return [item["image_url"], *[b["url"] for b in item.get("bands") or []], item["thumb_url"]]


def act_label(b: Browser, data, rng, username):
    task = data["task_id"]
    if len(b.held) < LOW_WATER:
        known = ",".join(str(i["galaxy_id"]) for i in b.held)
        got = b.timed("label: next", lambda: b.session.get(
            f"{b.base}/api/tasks/{task}/queue?n={PREFETCH}&exclude={known}", timeout=30))
        if got is not None and got.status_code == 200:
            held = {i["galaxy_id"] for i in b.held}
            fresh = [i for i in got.json().get("items", []) if i["galaxy_id"] not in held]
            b.held += fresh
            # the page's image cache holds a URL once: the reply's atlas is fetched once, not per item
            b.fetch_all(list(dict.fromkeys(url for item in fresh for url in item_images(item))))
    if not b.held:
        return
    item = b.held.pop(0)
    body = {"galaxy_id": item["galaxy_id"], "kind": "value", "class_index": rng.randrange(4)}
    posted = b.timed("label: post", lambda: b.session.post(
        f"{b.base}/api/tasks/{task}/labels", data=json.dumps(body),
        headers={"Content-Type": "application/json"}, timeout=30), ok=(201,))
    if posted is not None and posted.status_code == 201:
        with b.rec.lock:
            b.rec.labels_ok[username] += 1


def act_neighbours(b: Browser, data, rng, username):
    gid = rng.choice(data["galaxy_ids"])
    b.timed("neighbours", lambda: b.session.get(f"{b.base}/api/search/neighbours/{gid}?k=12", timeout=30))


def act_map_points(b: Browser, data, rng, username):
    x, y = rng.uniform(0, 8), rng.uniform(0, 8)
    bbox = f"{x:.3f},{y:.3f},{x + 2:.3f},{y + 2:.3f}"
    b.timed("map points", lambda: b.session.get(
        f"{b.base}/api/maps/{data['map_id']}/points?bbox={bbox}&limit=2000", timeout=30))


def act_grid(b: Browser, data, rng, username):
    page = rng.randrange(1, data["n_pages"] + 1)
    start = time.perf_counter()
    html = b.get("grid: html", f"/surveys/{data['survey_slug']}/?page={page}")
    if html is None or html.status_code != 200:
        return
    b.fetch_all(asset_urls(html.text))
    b.rec.add("grid: page + assets", (time.perf_counter() - start) * 1000)


ACTIONS = {"label": act_label, "neighbours": act_neighbours, "map_points": act_map_points, "grid": act_grid}


def user_loop(browser: Browser, username, data, deadline, think, seed):
    rng = random.Random(seed)
    actions = [a for a, w in WEIGHTS.items() for _ in range(w)]
    time.sleep(rng.uniform(0, think[1]))  # users arrive spread out, not in lock-step
    while time.monotonic() < deadline:
        ACTIONS[rng.choice(actions)](browser, data, rng, username)
        time.sleep(rng.uniform(*think))
    browser.pool.shutdown()


def client_process(cfg: dict, usernames: list[str], seed: int, ready, go, results) -> None:
    """One load-generator process at nice 19: log its people in, wait for ``go``, act for the
    duration, then report what it recorded and the CPU seconds it used while acting."""
    os.nice(CLIENT_NICE)
    rec = Recorder()
    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(lambda u: login(cfg["base"], u), usernames))
    browsers = [Browser(cfg["base"], s, rec, None if cfg["no_cache"] else PrivateCache()) for s in sessions]
    ready.put(len(browsers))
    go.wait()
    cpu0 = time.process_time()
    deadline = time.monotonic() + cfg["duration"]
    threads = [threading.Thread(target=user_loop, args=(b, u, cfg["data"], deadline, cfg["think"], seed + i))
               for i, (b, u) in enumerate(zip(browsers, usernames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put({**rec.as_dict(), "cpu_s": time.process_time() - cpu0})
