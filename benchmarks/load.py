"""Load: p50/p95/p99 latency, errors, lost labels and CPU with 50 concurrent people on the real stack.

Starts its own stack on 127.0.0.1 only: a fresh PostgreSQL database, a Redis broker database,
gunicorn (with the in-process CPU profile on, LATENTSKY_PROFILE_CPU=1) and a Celery worker, with a
simulated survey, an embedding set with its faiss index, a latent map and the demo labeling task.
Then N simulated people act for a fixed time with a think time between actions, like people at a
keyboard, and fetch what the real pages make a browser fetch:

  label       the labeling page (static/js/labeling.js): when fewer than 4 galaxies are held
              locally, GET the next 10 (queue?n=10&exclude=...) and preload each one's images
              (the stage composite, and one sprite atlas of the reply's thumbnails and band
              cutouts); then POST a label                                          (weight 4)
  neighbours  GET the 12 nearest neighbours of a galaxy                             (weight 2)
  map points  GET a page of map points in a random view                             (weight 1)
  grid        GET a survey grid page, then what its HTML references: the page's
              sprite atlas, scripts and stylesheets                                 (weight 1)

Each person has a private HTTP cache (benchmarks/load_browser.py): what came with max-age or
immutable is not fetched again while fresh, stale entries with an ETag are revalidated.
``--no-cache`` fetches everything every time (the worst case); ``--with-worst-case`` runs that
second, on the same stack, and records it beside the default.  The simulated people run in
separate processes at nice 19, so the server wins the 2 cores when both want them; their CPU
seconds and the server's (gunicorn + Celery, from /proc) are recorded apart, with the server's
CPU ms per request by URL name.  Afterwards every label that got a 201 must be in the database.

    python benchmarks/load.py                     # 50 people, 60 s, PostgreSQL + Redis
    python benchmarks/load.py --quick             # 10 people, 15 s, 1,000 galaxies
    python benchmarks/load.py --capacity          # 50, 100, 200, ... people (or 25, 12, ... when 50 fail):
                                                  # the most that meet the goals
    python benchmarks/load.py --servers gthread:3x8 gthread:3x4 sync:5   # worker classes on the same data
    python benchmarks/load.py --embedded          # SQLite + SQLAlchemy broker instead

Goals (benchmarks/goals.py): p95 < 200 ms for label next, label post, neighbours and map points,
p95 < 100 ms for a thumbnail or an atlas, no errors and no lost labels.  Embeddings are random
64-d vectors (latency does not depend on their quality); the survey images are real simulations.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from common import ROOT, print_table, write_result
from goals import load as load_goals
from load_browser import CLIENT_NICE, LOW_WATER, PASSWORD, PREFETCH, WEIGHTS, client_process

CAPACITY_STEPS = (50, 100, 200, 400, 800)
CAPACITY_STEPS_DOWN = (25, 12, 6, 3)   # when the first step misses a goal: how many people do meet them


def parse_args(argv=None):
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
    p.add_argument("--no-cache", action="store_true", help="no per-person HTTP cache: fetch everything every time")
    p.add_argument("--with-worst-case", action="store_true",
                   help="after the cached run, a second run without caches on the same stack, recorded beside it")
    p.add_argument("--capacity", action="store_true",
                   help=f"step the users through {', '.join(map(str, CAPACITY_STEPS))} until a goal fails; "
                        f"if the first step fails, down through {', '.join(map(str, CAPACITY_STEPS_DOWN))} "
                        "until one meets every goal")
    p.add_argument("--servers", nargs="+", default=[], metavar="CLASS:SHAPE",
                   help="after the main run, restart gunicorn as each of these and run one step of --users "
                        "people on the same data, e.g. gthread:3x8 gthread:3x4 sync:5 (worker class: "
                        "workers x threads, or workers)")
    p.add_argument("--worker-class", choices=("gthread", "sync"), default="gthread")
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (gthread)")
    p.add_argument("--client-procs", type=int, default=2, help="processes the simulated people run in")
    p.add_argument("--name", default="load")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.duration, args.n, args.name = 10, 15.0, 1000, args.name + "_quick"
    return args


# ----------------------------------------------------------------- the stack

def stack_env(args, data_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({"LATENTSKY_DATA_DIR": str(data_dir), "LATENTSKY_ENV": "development", "DEBUG": "false",
                "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                "LATENTSKY_PROFILE_CPU": "1"})
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


def build_data(n: int) -> dict:
    """Survey, embedding set + index, map and task; returns the ids the clients need."""
    import numpy as np
    from django.core.management import call_command

    from webapp.catalog.services.paging import OFFSET_LIMIT
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
    return {"task_id": task.pk, "map_id": lm.pk, "survey_slug": survey.slug, "galaxy_ids": ids.tolist(),
            # pages a person reaches by number: the grid answers ?page=N only within its first
            # OFFSET_LIMIT rows (deeper pages are cursor links; a number there is a 400)
            "n_pages": max(1, min(len(ids), OFFSET_LIMIT) // 100)}


def make_users(prefix: str, count: int) -> list[str]:
    """``count`` labellers named <prefix>NNN; one password hash shared by all (hashing 800 would take minutes)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    hashed = make_password(PASSWORD)
    users = User.objects.bulk_create([User(username=f"{prefix}{i:03d}", password=hashed) for i in range(count)])
    labeler = Group.objects.get(name="labeler")
    labeler.user_set.add(*User.objects.filter(username__in=[u.username for u in users]))
    return [u.username for u in users]


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


# ----------------------------------------------------------------- one measured step

def tree_cpu_seconds(root: int, proc: Path = Path("/proc")) -> float:
    """utime + stime of ``root`` and every live descendant, plus the CPU of children they
    already reaped (cutime + cstime), in seconds."""
    parents, ticks = {}, {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue                         # the process ended while we looked
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(fields[i]) for i in (11, 12, 13, 14))
    tree, frontier = set(), [root] if root in ticks else []
    while frontier:
        pid = frontier.pop()
        tree.add(pid)
        frontier += [child for child, parent in parents.items() if parent == pid and child not in tree]
    return sum(ticks[p] for p in tree) / os.sysconf("SC_CLK_TCK")



def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    qs = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"n": len(values), "p50_ms": round(qs[49], 1), "p95_ms": round(qs[94], 1), "p99_ms": round(qs[98], 1),
            "max_ms": round(max(values), 1)}


def count_stored_labels(task_id: int, users: list[str]) -> dict[str, int]:
    from django.db.models import Count
    from webapp.labeling.models import Label
    rows = (Label.objects.filter(task_id=task_id, user__username__in=users, kind="value")
            .values("user__username").annotate(n=Count("id")))
    return {r["user__username"]: r["n"] for r in rows}


def gather(queue, procs, timeout: float) -> list:
    """One message from each client process; stops early, loudly, if one of them died."""
    import queue as queues
    out, deadline = [], time.monotonic() + timeout
    while len(out) < len(procs):
        try:
            out.append(queue.get(timeout=1.0))
        except queues.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise SystemExit(f"a load-generator process failed (exit codes {dead}) or timed out")
    return out


def run_step(args, base: str, data: dict, users: list[str], no_cache: bool, server: dict, profile_dir: Path) -> dict:
    """``users`` people for args.duration seconds; the step's rows, labels, CPU and goals."""
    from webapp.profiling import read_profiles

    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    cfg = {"base": base, "data": data, "duration": args.duration, "think": tuple(args.think), "no_cache": no_cache}
    shares = [users[i::args.client_procs] for i in range(args.client_procs) if users[i::args.client_procs]]
    procs = [ctx.Process(target=client_process, args=(cfg, share, 1000 * k, ready, go, results))
             for k, share in enumerate(shares)]
    for proc in procs:
        proc.start()
    logged_in = sum(gather(ready, procs, 900))
    print(f"==> {logged_in} people ({'no cache' if no_cache else 'private caches'}) for {args.duration:.0f} s "
          f"(think {args.think[0]}-{args.think[1]} s)")
    cpu0 = {name: tree_cpu_seconds(pid) for name, pid in server.items()}
    since, started = time.time(), time.monotonic()
    go.set()
    parts = gather(results, procs, args.duration + 600)
    elapsed, until = time.monotonic() - started, time.time()
    server_cpu = {name: round(tree_cpu_seconds(pid) - cpu0[name], 1) for name, pid in server.items()}
    for proc in procs:
        proc.join(timeout=30)
    ms, errors, hits, labels_ok = defaultdict(list), defaultdict(list), defaultdict(int), defaultdict(int)
    for part in parts:
        for key, target in (("ms", ms), ("errors", errors)):
            for endpoint, values in part[key].items():
                target[endpoint] += values
        for endpoint, n in part["cache_hits"].items():
            hits[endpoint] += n
        for user, n in part["labels_ok"].items():
            labels_ok[user] += n
    stored = count_stored_labels(data["task_id"], users)
    lost = sum(max(0, labels_ok[u] - stored.get(u, 0)) for u in users)
    rows = [{"endpoint": e, **percentiles(ms[e]), "errors": len(errors[e]), "cache_hits": hits.get(e, 0),
             "error_kinds": sorted(set(errors[e]))[:5]} for e in sorted(set(ms) | set(hits))]
    requests = sum(len(v) for k, v in ms.items() if k != "grid: page + assets")
    body = {"users": len(users), "cache": "none" if no_cache else "private per person", "rows": rows,
            "requests": requests, "seconds": round(elapsed, 1), "requests_per_s": round(requests / elapsed, 1),
            "cache_hits": sum(hits.values()), "errors": sum(r["errors"] for r in rows),
            "labels_posted_ok": sum(labels_ok.values()), "labels_stored": sum(stored.values()), "labels_lost": lost,
            "cpu": {"server_s": server_cpu, "server_total_s": round(sum(server_cpu.values()), 1),
                    "server_ms_per_request": round(1000 * sum(server_cpu.values()) / max(requests, 1), 2),
                    "load_generator_s": round(sum(p["cpu_s"] for p in parts), 1),
                    "load_generator_nice": CLIENT_NICE, "cores": os.cpu_count()},
            "cpu_ms_per_request_by_url_name": read_profiles(profile_dir, since, until),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
    body["goals"] = load_goals(body)
    body["goals_met"] = all(g["met"] for g in body["goals"].values())
    return body


def report(step: dict) -> None:
    print_table(step["rows"], ["endpoint", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "cache_hits"])
    cpu = step["cpu"]
    print(f"\n{step['requests']} requests in {step['seconds']:.0f} s ({step['requests_per_s']:.0f}/s), "
          f"{step['cache_hits']} served by the people's caches; errors {step['errors']}")
    print(f"labels: {step['labels_posted_ok']} answered 201, {step['labels_stored']} stored, lost {step['labels_lost']}")
    print(f"CPU: server {cpu['server_s']} s ({cpu['server_ms_per_request']} ms per request), "
          f"load generator {cpu['load_generator_s']} s at nice {cpu['load_generator_nice']}")
    print_table([{"url name": k, **v} for k, v in step["cpu_ms_per_request_by_url_name"].items()],
                ["url name", "n", "mean_ms", "p50_ms", "p95_ms", "total_s"])
    for name, g in step["goals"].items():
        print(f"  goal {name}: {g['value']} {g['target']}: {'met' if g['met'] else 'NOT met'}")


def gunicorn_cmd(port: int, worker_class: str, workers: int, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}",
           "--worker-class", worker_class, "--workers", str(workers), "--timeout", "60"]
    return cmd + (["--threads", str(threads)] if worker_class == "gthread" else [])


def parse_server(spec: str) -> tuple[str, tuple[int, int]]:
    """"gthread:3x8" -> ("gthread", (3, 8)); "sync:5" -> ("sync", (5, 1))."""
    worker_class, _, shape = spec.partition(":")
    if worker_class not in ("gthread", "sync") or not shape:
        raise SystemExit(f"--servers: {spec!r} is not gthread:WxT or sync:W")
    workers, _, threads = shape.partition("x")
    if worker_class == "sync" and threads:
        raise SystemExit(f"--servers: a sync server has no threads ({spec!r})")
    return worker_class, (int(workers), int(threads or 1))


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
    print(f"==> building data ({args.n} galaxies) on {env['DATABASE_URL']}")
    data = build_data(args.n)
    base = f"http://127.0.0.1:{args.port}"
    web = start_process(gunicorn_cmd(args.port, args.worker_class, args.workers, args.threads), env,
                        data_dir / "web.log")
    worker = start_process([sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "default,cpu,gpu",
                            "--concurrency", "1", "--loglevel", "WARNING"], env, data_dir / "worker.log")
    server = {"gunicorn": web.pid, "celery": worker.pid}
    steps, worst, compared = [], None, []
    try:
        wait_http(base + "/healthz")
        sizes = [s for s in CAPACITY_STEPS if s >= args.users] if args.capacity else [args.users]
        for k, size in enumerate(sizes):
            steps.append(run_step(args, base, data, make_users(f"load{k}-", size), args.no_cache, server,
                                  data_dir / "cpu-profile"))
            report(steps[-1])
            if args.capacity and not steps[-1]["goals_met"]:
                break
        if args.capacity and not steps[0]["goals_met"]:
            for k, size in enumerate(s for s in CAPACITY_STEPS_DOWN if s < args.users):
                steps.append(run_step(args, base, data, make_users(f"down{k}-", size), args.no_cache, server,
                                      data_dir / "cpu-profile"))
                report(steps[-1])
                if steps[-1]["goals_met"]:
                    break
        if args.with_worst_case and not args.no_cache:
            worst = run_step(args, base, data, make_users("worst-", args.users), True, server,
                             data_dir / "cpu-profile")
            print("\n==== worst case: no caches")
            report(worst)
        for k, spec in enumerate(args.servers):
            stop(web)
            worker_class, shape = parse_server(spec)
            web = start_process(gunicorn_cmd(args.port, worker_class, *shape), env, data_dir / f"web-{k}.log")
            server["gunicorn"] = web.pid
            wait_http(base + "/healthz")
            step = run_step(args, base, data, make_users(f"srv{k}-", args.users), args.no_cache, server,
                            data_dir / "cpu-profile")
            print(f"\n==== server {spec}")
            report(step)
            compared.append({"server": spec, **{key: step[key] for key in (
                "users", "rows", "requests_per_s", "errors", "labels_stored", "labels_lost", "cpu", "goals",
                "goals_met")}})
    finally:
        stop(web)
        stop(worker)
    first = steps[0]
    passing = [s["users"] for s in steps if s["goals_met"]]
    config = {"users": args.users, "duration_s": args.duration, "think_s": list(args.think), "n": args.n,
              "stack": "SQLite + SQLAlchemy broker" if args.embedded else "PostgreSQL + Redis",
              "server": f"gunicorn {args.worker_class}, {args.workers} workers"
                        + (f" x {args.threads} threads" if args.worker_class == "gthread" else ""),
              "worker": "celery concurrency 1", "weights": WEIGHTS, "prefetch": PREFETCH, "low_water": LOW_WATER,
              "client_procs": args.client_procs, "embeddings": "random 64-d vectors, faiss index",
              "quick": args.quick, "cache": first["cache"]}
    payload = {"config": config, **{k: v for k, v in first.items() if k != "goals"}}   # write_result derives them
    if args.capacity:
        payload["capacity"] = {"steps": [{k: s[k] for k in ("users", "requests_per_s", "errors", "labels_lost",
                                                            "goals", "goals_met", "cpu")} for s in steps],
                               "users_meeting_goals": max(passing) if passing else 0}
    if worst is not None:
        payload["worst_case"] = worst
    if compared:
        payload["servers"] = compared
    path = write_result(args.name, payload)
    print(f"wrote {path}")
    # the exit status judges the --users step (make reliability's 50); capacity steps are meant to overload
    return 0 if (first["labels_lost"] == 0 and first["errors"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
