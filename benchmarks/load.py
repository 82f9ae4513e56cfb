"""Load: p50/p95/p99 latency and errors with 50 concurrent users on the real stack.

Starts its own stack on 127.0.0.1 only: a fresh PostgreSQL database, a Redis
broker database, gunicorn and a Celery worker, with a simulated survey, an
embedding set with its faiss index, a latent map and the demo labeling task.
Then N simulated users (threads, each with its own login session) act for a
fixed time with a think time between actions, like people at a keyboard:

  label     GET the next queued galaxy, then POST a label       (weight 4)
  neighbours  GET the 12 nearest neighbours of a galaxy          (weight 2)
  map points  GET a page of map points in a random view          (weight 1)
  grid      GET a survey grid page and its 100 thumbnails        (weight 1)

Afterwards every label that got a 201 must be in the database: they are counted.

    python benchmarks/load.py                     # 50 users, 60 s, PostgreSQL + Redis
    python benchmarks/load.py --quick             # 10 users, 15 s
    python benchmarks/load.py --embedded          # SQLite + SQLAlchemy broker instead

Embeddings are random 64-d vectors (latency does not depend on their quality, and
the load test must not wait for training); the survey images are real simulations.
The clients share the 2 cores with the server, so figures are pessimistic.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, print_table, write_result

GOAL_P95_MS = 200.0          # labeling and neighbours, on 2 cores
THUMB_RE = re.compile(r'src="(/thumbs/\d+\.png\?[^"]+)"')
WEIGHTS = {"label": 4, "neighbours": 2, "map_points": 1, "grid": 1}
PASSWORD = "load-test-password"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--think", type=float, nargs=2, default=(0.5, 1.5), metavar=("MIN", "MAX"),
                   help="seconds between one user's actions (uniform)")
    p.add_argument("--n", type=int, default=5000, help="galaxies in the simulated survey")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/latentsky_load")
    p.add_argument("--broker-url", default="redis://127.0.0.1:6379/11")
    p.add_argument("--embedded", action="store_true", help="SQLite + SQLAlchemy broker")
    p.add_argument("--quick", action="store_true", help="10 users, 15 s, 1,000 galaxies")
    p.add_argument("--name", default="load")
    args = p.parse_args()
    if args.quick:
        args.users, args.duration, args.n, args.name = 10, 15.0, 1000, args.name + "_quick"
    return args


# ----------------------------------------------------------------- the stack

def stack_env(args, data_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({"LATENTSKY_DATA_DIR": str(data_dir), "LATENTSKY_ENV": "development", "DEBUG": "false",
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    if args.embedded:
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'db.sqlite3'}"
        env["CELERY_BROKER_URL"] = f"sqla+sqlite:///{data_dir / 'broker.sqlite3'}"
    else:
        env["DATABASE_URL"], env["CELERY_BROKER_URL"] = args.database_url, args.broker_url
    return env


def recreate_postgres(url: str) -> None:
    import psycopg
    from urllib.parse import urlparse
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(url: str) -> None:
    import redis
    redis.Redis.from_url(url).flushdb()


def setup_django(env: dict) -> None:
    os.environ.update({k: v for k, v in env.items() if k.startswith(("LATENTSKY_", "DATABASE_", "CELERY_", "DEBUG",
                                                                     "ALLOWED_"))})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    sys.path.insert(0, str(ROOT))
    import django
    django.setup()


def build_data(n: int, users: int) -> dict:
    """Survey, embedding set + index, map, task and users; returns ids the clients need."""
    import numpy as np
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from webapp.catalog.services.simulation import simulate_and_publish
    from webapp.embeddings.models import EmbeddingSet, Encoder, LatentMap
    from webapp.embeddings.services.index import build_for_set
    from webapp.embeddings.services.maps import write_map_coords
    from webapp.embeddings.services.vectors import write_embedding_set
    from webapp.labeling.services.demo import ensure_demo_task

    call_command("migrate", verbosity=0, interactive=False)
    t0 = time.monotonic()
    (survey,) = simulate_and_publish(n, seed=7, slugs=("sim-sdss",), processes=2)
    print(f"  simulated {n} galaxies in {time.monotonic() - t0:.0f} s")
    ids = np.array(survey.galaxies.order_by("image_index").values_list("pk", flat=True), dtype=np.int64)
    rng = np.random.default_rng(0)
    encoder = Encoder.objects.create(name="load-test (random vectors)", method="none", config={})
    es = EmbeddingSet.objects.create(encoder=encoder, name="load-test set")
    es.surveys.add(survey)
    write_embedding_set(es, ids, rng.normal(size=(len(ids), 64)).astype(np.float32))
    build_for_set(es)
    lm = LatentMap.objects.create(embedding_set=es, params={"note": "random coordinates for the load test"})
    write_map_coords(lm, rng.uniform(0, 10, size=(len(ids), 2)).astype(np.float32))
    task = ensure_demo_task(es)
    labeler = Group.objects.get(name="labeler")
    names = []
    for i in range(users):
        user = User.objects.create_user(f"load{i:03d}", password=PASSWORD)
        user.groups.add(labeler)
        names.append(user.username)
    return {"task_id": task.pk, "map_id": lm.pk, "survey_slug": survey.slug, "galaxy_ids": ids.tolist(),
            "n_pages": max(1, len(ids) // 100), "users": names}


def start_process(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_http(url: str, timeout: float = 60.0) -> None:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# ----------------------------------------------------------------- the users

class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.ms = defaultdict(list)
        self.errors = defaultdict(list)
        self.labels_ok = defaultdict(int)   # username -> labels that got 201

    def add(self, endpoint: str, ms: float, error: str | None = None):
        with self.lock:
            self.ms[endpoint].append(ms)
            if error:
                self.errors[endpoint].append(error)


def timed(rec: Recorder, endpoint: str, call, ok=(200,)):
    start = time.perf_counter()
    try:
        response = call()
    except Exception as exc:  # connection refused/reset: an error for the table, not a crash
        rec.add(endpoint, (time.perf_counter() - start) * 1000, f"{exc.__class__.__name__}")
        return None
    ms = (time.perf_counter() - start) * 1000
    rec.add(endpoint, ms, None if response.status_code in ok else f"HTTP {response.status_code}")
    return response


def login(base: str, username: str):
    import requests
    session = requests.Session()
    session.get(base + "/accounts/login/", timeout=30)
    response = session.post(base + "/accounts/login/", timeout=30, data={
        "username": username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": base + "/accounts/login/"})
    if "sessionid" not in session.cookies:
        raise SystemExit(f"login failed for {username}: HTTP {response.status_code}")
    session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": base + "/"})
    return session


def act_label(base, session, data, rec, rng, username):
    got = timed(rec, "label: next", lambda: session.get(f"{base}/api/tasks/{data['task_id']}/queue?n=1", timeout=30))
    if got is None or got.status_code != 200 or not got.json().get("items"):
        return
    galaxy_id = got.json()["items"][0]["galaxy_id"]
    body = {"galaxy_id": galaxy_id, "kind": "value", "class_index": rng.randrange(4)}
    posted = timed(rec, "label: post", lambda: session.post(
        f"{base}/api/tasks/{data['task_id']}/labels", data=json.dumps(body),
        headers={"Content-Type": "application/json"}, timeout=30), ok=(201,))
    if posted is not None and posted.status_code == 201:
        with rec.lock:
            rec.labels_ok[username] += 1


def act_neighbours(base, session, data, rec, rng, username):
    gid = rng.choice(data["galaxy_ids"])
    timed(rec, "neighbours", lambda: session.get(f"{base}/api/search/neighbours/{gid}?k=12", timeout=30))


def act_map_points(base, session, data, rec, rng, username):
    x, y = rng.uniform(0, 8), rng.uniform(0, 8)
    bbox = f"{x:.3f},{y:.3f},{x + 2:.3f},{y + 2:.3f}"
    timed(rec, "map points", lambda: session.get(
        f"{base}/api/maps/{data['map_id']}/points?bbox={bbox}&limit=2000", timeout=30))


def act_grid(base, session, data, rec, rng, username, pool: ThreadPoolExecutor):
    page = rng.randrange(1, data["n_pages"] + 1)
    start = time.perf_counter()
    html = timed(rec, "grid: html", lambda: session.get(f"{base}/surveys/{data['survey_slug']}/?page={page}", timeout=30))
    if html is None or html.status_code != 200:
        return
    urls = THUMB_RE.findall(html.text)
    list(pool.map(lambda u: timed(rec, "grid: thumbnail", lambda: session.get(base + u.replace("&amp;", "&"), timeout=30)), urls))
    rec.add("grid: page + 100 thumbs", (time.perf_counter() - start) * 1000)


def user_loop(base, username, data, rec, deadline, think, seed):
    rng = random.Random(seed)
    session = login(base, username)
    pool = ThreadPoolExecutor(4)  # a browser fetches a few images at a time
    actions = [a for a, w in WEIGHTS.items() for _ in range(w)]
    time.sleep(rng.uniform(0, think[1]))  # users arrive spread out, not in lock-step
    while time.monotonic() < deadline:
        action = rng.choice(actions)
        if action == "grid":
            act_grid(base, session, data, rec, rng, username, pool)
        else:
            {"label": act_label, "neighbours": act_neighbours, "map_points": act_map_points}[action](
                base, session, data, rec, rng, username)
        time.sleep(rng.uniform(*think))
    pool.shutdown()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    qs = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"n": len(values), "p50_ms": round(qs[49], 1), "p95_ms": round(qs[94], 1), "p99_ms": round(qs[98], 1),
            "max_ms": round(max(values), 1)}


def count_stored_labels(data: dict) -> dict[str, int]:
    from django.db.models import Count
    from webapp.labeling.models import Label
    rows = (Label.objects.filter(task_id=data["task_id"], user__username__in=data["users"], kind="value")
            .values("user__username").annotate(n=Count("id")))
    return {r["user__username"]: r["n"] for r in rows}


def main():
    args = parse_args()
    data_dir = ROOT / "var" / "load"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = stack_env(args, data_dir)
    if not args.embedded:
        recreate_postgres(args.database_url)
        flush_redis(args.broker_url)
    setup_django(env)
    print(f"==> building data ({args.n} galaxies, {args.users} users) on {env['DATABASE_URL']}")
    data = build_data(args.n, args.users)
    base = f"http://127.0.0.1:{args.port}"
    web = start_process([sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{args.port}",
                         "--workers", "3", "--threads", "8", "--timeout", "60"], env, data_dir / "web.log")
    worker = start_process([sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,cpu,gpu",
                            "--concurrency", "1", "--loglevel", "WARNING"], env, data_dir / "worker.log")
    rec = Recorder()
    try:
        wait_http(base + "/healthz")
        print(f"==> {args.users} users for {args.duration:.0f} s (think {args.think[0]}-{args.think[1]} s)")
        deadline = time.monotonic() + args.duration
        started = time.monotonic()
        threads = [threading.Thread(target=user_loop, args=(base, u, data, rec, deadline, args.think, i))
                   for i, u in enumerate(data["users"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        stop(web)
        stop(worker)
    stored = count_stored_labels(data)
    posted_ok = sum(rec.labels_ok.values())
    lost = sum(max(0, rec.labels_ok[u] - stored.get(u, 0)) for u in data["users"])
    rows = []
    for endpoint in sorted(rec.ms):
        stats = percentiles(rec.ms[endpoint])
        rows.append({"endpoint": endpoint, **stats, "errors": len(rec.errors[endpoint]),
                     "error_kinds": sorted(set(rec.errors[endpoint]))[:5]})
    print_table(rows, ["endpoint", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors"])
    total_requests = sum(len(v) for k, v in rec.ms.items() if k != "grid: page + 100 thumbs")
    goals = {k: next((r["p95_ms"] for r in rows if r["endpoint"] == k), None)
             for k in ("label: next", "label: post", "neighbours")}
    met = all(v is not None and v < GOAL_P95_MS for v in goals.values())
    errors = sum(r["errors"] for r in rows)
    print(f"\n{total_requests} requests in {elapsed:.0f} s ({total_requests / elapsed:.0f}/s); errors {errors}")
    print(f"labels: {posted_ok} answered 201, {sum(stored.values())} stored, lost {lost}")
    print(f"goal p95 < {GOAL_P95_MS:.0f} ms for labeling and neighbours: {'met' if met else 'NOT met'} {goals}")
    path = write_result(args.name, {
        "config": {"users": args.users, "duration_s": args.duration, "think_s": list(args.think), "n": args.n,
                   "stack": "SQLite + SQLAlchemy broker" if args.embedded else "PostgreSQL + Redis",
                   "server": "gunicorn 3 workers x 8 threads", "worker": "celery concurrency 1",
                   "weights": WEIGHTS, "embeddings": "random 64-d vectors, faiss index", "quick": args.quick},
        "rows": rows, "requests": total_requests, "seconds": round(elapsed, 1),
        "requests_per_s": round(total_requests / elapsed, 1), "errors": errors,
        "labels_posted_ok": posted_ok, "labels_stored": sum(stored.values()), "labels_lost": lost,
        "goal_p95_ms": GOAL_P95_MS, "goal_met": met})
    print(f"wrote {path}")
    return 0 if (lost == 0 and errors == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
