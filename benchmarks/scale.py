"""Survey scale (issue 14): import an embedding table like a user, build everything, time the pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/latentsky \\
        .venv/bin/python benchmarks/scale.py --n 1000000 --n 10000000 [--keep]
    ... benchmarks/scale.py --n 10000000 --resume --keep --steps web   # re-measure on kept data
    .venv/bin/python benchmarks/scale.py --sqlite --n 1000000 --name scale_sqlite   # the laptop default

For each N (D = 128 by default), on PostgreSQL, in a database and data directory of its own
(``latentsky_scale_<N>``, ``var/scale/<N>``; both removed afterwards unless --keep):

1. a synthetic clustered table with a catalogue (benchmarks/scale_table.py; cached in
   var/scale/tables, not timed as part of the app);
2. ``manage.py import_embeddings`` on it, as a user would run it;
3. ``manage.py run_job`` for build_index, umap, map_tiles, one labeling round with 1,000 labels
   (given through services.labels.record_labels, classes taken from the vectors: a timing, not a
   quality figure) and anomaly_scores; cutouts come from the local cutout server
   (tests/cutout_server.py on 127.0.0.1, ``manage.py set_cutout_url``);
4. a fresh web process (this script with ``--child web``) that serves, in process through
   django.test.Client (server side, no network, one user), a deep grid page, galaxy pages,
   neighbours, map tiles zoomed out and deep, labeling next, anomaly next, cone searches and
   remote-cutout thumbnails, then reports its RSS;
5. search recall@50 of the app's index (``--child recall``) against exact cosine search on
   1,000 random stored rows.

Every step runs as its own process; its wall time and peak RSS (os.wait4's ru_maxrss) are recorded.
The result file is rewritten after every step, so a run cut short still reports what it measured
(steps not reached say so).  Goals are judged at the largest N measured, against the issue's
targets for 10^7; growth ratios compare the smallest and the largest N.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, git_info, goal, write_result  # noqa: E402
from scale_table import write_table  # noqa: E402

PY = sys.executable
MANAGE = str(ROOT / "manage.py")
# In this order, so that a run cut short has measured the most: the web step measures what exists
# by then; web_tiles and web_anomaly add the map tiles and anomaly next once they are built.
STEPS = ("import", "index", "round", "web", "recall", "map", "tiles", "web_tiles", "anomaly", "web_anomaly")
N_LABELS = 1000
CLASSES = [{"name": "a", "key": "1"}, {"name": "b", "key": "2"}, {"name": "c", "key": "3"}]


# --------------------------------------------------------------------------------------------
# the parent: one database and data directory per N, each step a child process


def database_url(base: str, name: str) -> str:
    parts = urlparse(base)
    return urlunparse(parts._replace(path="/" + name))


def recreate_database(base: str, name: str, drop_only: bool = False) -> None:
    import psycopg
    with psycopg.connect(database_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


# The server settings that decide bulk-load speed (the README's PostgreSQL advice); recorded with
# every step, since a figure measured at the default 128 MB shared_buffers is not one at 4 GB
PG_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "maintenance_work_mem", "wal_compression")


def server_settings(url: str) -> dict:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}


def ensure_database(base: str, name: str) -> None:
    import psycopg
    with psycopg.connect(database_url(base, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MemoryWatch(threading.Thread):
    """Peaks of a process's private (RssAnon) and file-backed (RssFile) resident memory, read from
    /proc every 0.2 s.  ru_maxrss counts the pages of memory-mapped files a job streams through
    (reclaimable page cache, shared between processes) as well as its own; the split says which."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.anon_kb, self.file_kb = pid, 0, 0
        self.stop = threading.Event()

    def run(self):
        path = Path(f"/proc/{self.pid}/status")
        while not self.stop.wait(0.2):
            try:
                fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
            except (OSError, ValueError):
                return
            self.anon_kb = max(self.anon_kb, int(fields.get("RssAnon", "0 kB").split()[0]))
            self.file_kb = max(self.file_kb, int(fields.get("RssFile", "0 kB").split()[0]))


def run_child(argv: list[str], env: dict, log: Path, timeout: float | None = None) -> dict:
    """Run argv; {"seconds", "peak_rss_mb", "peak_private_mb", "peak_file_mb", "rc", "stdout"};
    raises StepFailed on a non-zero exit."""
    start = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=out)
        watch = MemoryWatch(proc.pid)
        watch.start()
        chunks = []
        for line in proc.stdout:
            chunks.append(line)
            out.write(line)
        watch.stop.set()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    text = b"".join(chunks).decode(errors="replace")
    info = {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_private_mb": round(watch.anon_kb / 1024, 1), "peak_file_mb": round(watch.file_kb / 1024, 1),
            "rc": proc.returncode}
    if proc.returncode != 0:
        raise StepFailed(f"{' '.join(argv[:4])}… exited {proc.returncode}; see {log}", info)
    info["stdout"] = text
    return info


class StepFailed(RuntimeError):
    def __init__(self, message, info):
        super().__init__(message)
        self.info = info


def last_json(text: str) -> dict:
    """The last line of a child's stdout that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("the child printed no JSON result")


def run_scale(n: int, args, record: dict, save) -> None:
    work = Path(args.workdir).resolve() / str(n)
    tables = Path(args.workdir).resolve() / "tables"
    name = f"latentsky_scale_{n}"
    sqlite = args.database_url.startswith("sqlite")
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
        if not sqlite:
            recreate_database(args.database_url, name)
    elif not sqlite:
        ensure_database(args.database_url, name)   # a new N added to an earlier run's results
    work.mkdir(parents=True, exist_ok=True)
    log = work / "run.log"
    url = f"sqlite:///{work / 'db.sqlite3'}" if sqlite else database_url(args.database_url, name)
    env = {**os.environ, "DATABASE_URL": url,
           "LATENTSKY_DATA_DIR": str(work / "data"), "LATENTSKY_ENV": "development", "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    env.pop("CELERY_BROKER_URL", None)  # the default server-less broker: run_job runs jobs inline
    steps = record.setdefault("steps", {})
    if not args.resume:
        record["git"] = git_info()
    record.update({"n": n, "d": args.d, "database": "sqlite" if sqlite else "postgresql", "log": str(log)})

    def step(key, argv, extra_env=None, timeout=None, parse=False):
        print(f"[{n:,}] {key} …", flush=True)
        commit = git_info()                 # the code the step runs (a resumed step may run at another commit)
        try:
            info = run_child(argv, {**env, **(extra_env or {})}, log, timeout)
        except StepFailed as exc:
            steps[key] = {**exc.info, "error": str(exc)}
            save()
            raise
        out = info.pop("stdout")
        if parse:
            info["result"] = last_json(out)
        info["git"] = commit
        if not sqlite:
            info["postgres_settings"] = server_settings(url)
        if args.resume and key in steps:   # keep what the earlier run measured beside the re-run
            info["earlier_run"] = {k: v for k, v in steps[key].items() if k != "earlier_run"}
            info["earlier_run"].setdefault("git", record.get("git"))
        steps[key] = info
        print(f"[{n:,}] {key}: {info['seconds']} s, peak RSS {info['peak_rss_mb']} MB", flush=True)
        save()
        return info

    run_child([PY, MANAGE, "migrate", "-v0"], env, log)
    table = tables / f"scale_{n}_d{args.d}.parquet"
    if args.resume and "import" not in args.steps:
        pass
    elif not table.exists():
        print(f"[{n:,}] writing the table {table} …", flush=True)
        record["table"] = write_table(table, n, args.d, seed=0)
    else:
        record["table"] = {"rows": n, "bytes": table.stat().st_size, "cached": True}
    save()

    server = subprocess.Popen([PY, "-m", "tests.cutout_server", "--port", str(port := free_port())], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wanted = [s for s in STEPS if s in args.steps]
        ids: dict = {}
        if "import" in wanted:
            step("import", [PY, MANAGE, "import_embeddings", str(table), "--name", f"Scale {n}"])
        ids.update(child_json([PY, __file__, "--child", "ids"], env, log))
        es = ids["embedding_set_id"]
        run_child([PY, MANAGE, "set_cutout_url", ids["slug"],
                   f"http://127.0.0.1:{port}/cutout.jpg?ra={{ra}}&dec={{dec}}&size={{size}}"], env, log)
        if "index" in wanted:
            step("index", [PY, MANAGE, "run_job", "build_index", "--param", f"embedding_set_id={es}"])
        if "round" in wanted:
            setup = child_json([PY, __file__, "--child", "labels", "--labels", str(N_LABELS)], env, log)
            record["round_setup"] = setup
            step("round", [PY, MANAGE, "run_job", "--job", str(setup["job_id"])])
        if "web" in wanted:
            step("web", [PY, __file__, "--child", "web", "--requests", str(args.requests)], parse=True)
        if "recall" in wanted:
            step("recall", [PY, __file__, "--child", "recall", "--queries", str(args.queries)], parse=True)
        if "map" in wanted:
            # tiles are timed as their own step: no follow-up tiles job inside the map's process
            step("map", [PY, MANAGE, "run_job", "umap", "--param", f"embedding_set_id={es}"],
                 {"LATENTSKY_MAP_TILE_THRESHOLD": str(10 ** 12)})
            ids.update(child_json([PY, __file__, "--child", "ids"], env, log))
        if "tiles" in wanted and ids.get("latent_map_id"):
            step("tiles", [PY, MANAGE, "run_job", "map_tiles", "--param", f"latent_map_id={ids['latent_map_id']}"])
            if "web_tiles" in wanted:
                step("web_tiles", [PY, __file__, "--child", "web", "--requests", str(args.requests),
                                   "--only", "tiles"], parse=True)
        if "anomaly" in wanted:
            step("anomaly", [PY, MANAGE, "run_job", "anomaly_scores", "--param", f"embedding_set_id={es}"])
            if "web_anomaly" in wanted:
                step("web_anomaly", [PY, __file__, "--child", "web", "--requests", str(args.requests),
                                     "--only", "anomaly_next"], parse=True)
        record["disk_mb"] = round(sum(p.stat().st_size for p in (work / "data").rglob("*") if p.is_file()) / 2**20)
        record["complete"] = True
        save()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        if not args.keep:
            if not sqlite:
                recreate_database(args.database_url, name, drop_only=True)
            shutil.rmtree(work / "data", ignore_errors=True)
            (work / "db.sqlite3").unlink(missing_ok=True)


def child_json(argv, env, log) -> dict:
    return last_json(run_child(argv, env, log)["stdout"])


# --------------------------------------------------------------------------------------------
# summary, growth and goals


def summary(runs: dict) -> dict:
    rows = {}
    for key, run in runs.items():
        steps = run.get("steps", {})
        web = (steps.get("web") or {}).get("result", {})
        endpoints = {name: e for key in ("web", "web_tiles", "web_anomaly")
                     for name, e in (steps.get(key) or {}).get("result", {}).get("endpoints", {}).items()}
        rows[key] = {
            "import_s": steps.get("import", {}).get("seconds"),
            **{f"{s}_s": steps.get(s, {}).get("seconds") for s in ("index", "map", "tiles", "round", "anomaly")},
            "max_job_peak_rss_mb": max([v.get("peak_rss_mb", 0) for k, v in steps.items()
                                        if not k.startswith("web") and k != "recall"] or [None]),
            "max_job_peak_private_mb": max([v["peak_private_mb"] for k, v in steps.items()
                                            if not k.startswith("web") and k != "recall"
                                            and "peak_private_mb" in v] or [None]),
            "web_rss_mb": web.get("rss_mb"),
            "recall_at_50": (steps.get("recall") or {}).get("result", {}).get("recall_at_50"),
            **{f"{name}_p95_ms": e.get("p95_ms") for name, e in endpoints.items()},
            "web_endpoint_errors": {name: e["error"] for name, e in endpoints.items() if "error" in e} or None,
        }
    return rows


def growth(rows: dict) -> dict:
    keys = sorted(rows, key=int)
    if len(keys) < 2:
        return {}
    lo, hi = rows[keys[0]], rows[keys[-1]]
    return {"from": int(keys[0]), "to": int(keys[-1]),
            "ratios": {k: round(hi[k] / lo[k], 2) for k in lo
                       if isinstance(lo.get(k), (int, float)) and isinstance(hi.get(k), (int, float)) and lo[k]}}


def size_tag(n: int) -> str:
    """1e7, 3e6, 1.6e5: N as a short, exact-enough label for goal names."""
    mantissa, exponent = f"{n:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def goals(rows: dict) -> dict:
    if not rows:
        return {}
    key = max(rows, key=int)
    r, tag = rows[key], f"[{size_tag(int(key))}]"
    pages = [v for k, v in r.items() if k.endswith("_p95_ms") and v is not None
             and not k.startswith("thumbnail_remote_uncached")]   # an uncached cutout waits on the remote
    out = {
        f"import_minutes{tag}": goal(None if r["import_s"] is None else r["import_s"] / 60, "< 15"),
        f"max_job_peak_rss_gb{tag}": goal(None if r["max_job_peak_rss_mb"] is None else r["max_job_peak_rss_mb"] / 1024,
                                          "< 8"),
        f"web_rss_gb{tag}": goal(None if r["web_rss_mb"] is None else r["web_rss_mb"] / 1024, "< 1.5"),
        f"max_page_api_p95_ms{tag}": goal(max(pages) if pages else None, "< 300"),
        f"neighbours_p95_ms{tag}": goal(r.get("neighbours_p95_ms"), "< 20"),
        f"recall_at_50{tag}": goal(r.get("recall_at_50"), ">= 0.9"),
        f"map_tile_p95_ms{tag}": goal(max([v for v in (r.get("tile_zoomed_out_p95_ms"), r.get("tile_deep_p95_ms"))
                                           if v is not None] or [None]) if any(
            r.get(k) is not None for k in ("tile_zoomed_out_p95_ms", "tile_deep_p95_ms")) else None, "< 200"),
        f"labeling_next_p95_ms{tag}": goal(r.get("labeling_next_p95_ms"), "< 100"),
        f"round_minutes{tag}": goal(None if r["round_s"] is None else r["round_s"] / 60, "< 5"),
        f"anomaly_minutes{tag}": goal(None if r["anomaly_s"] is None else r["anomaly_s"] / 60, "< 60"),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, action="append", help="rows (repeat for several; default 1e6)")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    ap.add_argument("--workdir", default=str(ROOT / "var" / "scale"))
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    ap.add_argument("--requests", type=int, default=40, help="timed requests per endpoint (after one warm-up)")
    ap.add_argument("--queries", type=int, default=1000, help="recall queries")
    ap.add_argument("--keep", action="store_true", help="keep the databases and data directories")
    ap.add_argument("--resume", action="store_true",
                    help="run --steps on a database and data kept by an earlier --keep run, updating its "
                         "record in the results file (e.g. re-measure the web step after a fix)")
    ap.add_argument("--name", default="scale")
    ap.add_argument("--sqlite", action="store_true", help="measure the SQLite default instead of PostgreSQL")
    ap.add_argument("--child", choices=("ids", "labels", "web", "recall"), help=argparse.SUPPRESS)
    ap.add_argument("--labels", type=int, default=N_LABELS, help=argparse.SUPPRESS)
    ap.add_argument("--only", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args)
    if args.sqlite:
        args.database_url = "sqlite://"
    elif not args.database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("scale.py measures on PostgreSQL: set DATABASE_URL (or --database-url) to a PostgreSQL "
                 "server, or pass --sqlite for the laptop default (one database file per N)")
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    ns = args.n or [1_000_000]
    payload = {"setup": {"d": args.d, "ns": ns, "labels": N_LABELS, "requests_per_endpoint": args.requests,
                         "recall_queries": args.queries, "steps": args.steps,
                         "note": "server-side timings through django.test.Client in a fresh process, one user; "
                                 "every step a separate process; 2 cores shared with nothing else unless "
                                 "machine.loadavg says otherwise"},
               "runs": {}}
    previous = Path(__file__).resolve().parent / "results" / f"{args.name}.json"
    if args.resume and previous.exists():
        payload["runs"] = json.loads(previous.read_text()).get("runs", {})
        payload["setup"]["resumed"] = {"steps": args.steps, "note": "steps re-run on the kept data of an "
                                       "earlier run; their figures replace that run's"}

    def save():
        rows = summary(payload["runs"])
        payload["summary"], payload["growth"], payload["goals"] = rows, growth(rows), goals(rows)
        write_result(args.name, payload)

    for n in ns:
        record = payload["runs"].setdefault(str(n), {"complete": False})
        try:
            run_scale(n, args, record, save)
        except (StepFailed, KeyboardInterrupt) as exc:
            record["stopped"] = f"{type(exc).__name__}: {exc}"
            save()
            if isinstance(exc, KeyboardInterrupt):
                raise
    save()
    print(json.dumps({"summary": payload["summary"], "growth": payload["growth"]}, indent=1))


# --------------------------------------------------------------------------------------------
# children: run inside the app (django.setup) against the N's database


def child_main(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    sys.path.insert(0, str(ROOT))
    import django
    django.setup()
    result = {"ids": child_ids, "labels": child_labels, "web": child_web, "recall": child_recall}[args.child](args)
    print(json.dumps(result, default=float))


def _latest():
    from webapp.embeddings.models import EmbeddingSet, LatentMap
    es = EmbeddingSet.objects.order_by("-pk").first()
    lm = LatentMap.objects.filter(embedding_set=es, status="ready").order_by("-pk").first()
    return es, lm


def child_ids(args) -> dict:
    es, lm = _latest()
    survey = es.surveys.get()
    return {"embedding_set_id": es.pk, "slug": survey.slug, "survey_id": survey.pk,
            "latent_map_id": lm.pk if lm else None, "n": es.n}


def _admin():
    from django.contrib.auth import get_user_model
    user, created = get_user_model().objects.get_or_create(username="scale-admin")
    if created:
        user.is_staff = user.is_superuser = True
        user.save()
    return user


def child_labels(args) -> dict:
    """A classification task on the set, ``--labels`` labels from one person, a round queued."""
    import numpy as np

    from webapp.embeddings.services.vectors import load_embedding_set
    from webapp.labeling.models import Task
    from webapp.labeling.services import labels, rounds

    es, _ = _latest()
    user = _admin()
    task = Task.objects.create(name=f"Scale task {es.pk}", classes=CLASSES, embedding_set=es, round_every=0,
                               created_by=user)
    task.surveys.set(es.surveys.all())
    ids, vectors, _ = load_embedding_set(es)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(es.n, args.labels, replace=False))
    classes = np.argmax(np.asarray(vectors[rows, :3]), axis=1)   # a class the vectors can predict
    t = time.perf_counter()
    labels.record_labels(task, user, [{"galaxy_id": int(ids[r]), "class_index": int(c)}
                                      for r, c in zip(rows, classes)])
    stored = time.perf_counter() - t
    rnd = rounds.start_round(task, user)
    return {"task_id": task.pk, "round_id": rnd.pk, "job_id": rnd.job_id, "labels": args.labels,
            "labels_store_s": round(stored, 2)}


def _timed(client, urls: list[str], expect=(200,)) -> dict:
    """p50/p95 of GET each url (after one warm-up); an endpoint that fails is recorded, not fatal."""
    try:
        return _timed_or_raise(client, urls, expect)
    except Exception as exc:  # noqa: BLE001 - the benchmark reports the error instead of stopping
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def _timed_or_raise(client, urls: list[str], expect=(200,)) -> dict:
    import numpy as np
    client.get(urls[0])  # warm-up (first use of the index, files, templates)
    times, statuses = [], {}
    for url in urls:
        t = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code not in expect:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.content[:300]!r}")
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2),
            "requests": len(urls), "statuses": statuses}


def child_web(args) -> dict:
    import numpy as np
    from django.test import Client

    from ml.tiles import tile_xy
    from webapp.anomalies.models import ScoreSet
    from webapp.catalog.models import Galaxy
    from webapp.catalog.services import browse, paging
    from webapp.embeddings.services import map_tiles
    from webapp.embeddings.services.maps import load_coords
    from webapp.embeddings.services.vectors import load_embedding_set
    from webapp.labeling.models import Task

    es, lm = _latest()
    survey = es.surveys.get()
    client = Client()
    client.force_login(_admin())
    rng = np.random.default_rng(1)
    count = args.requests
    ids, _, _ = load_embedding_set(es)
    galaxies = [int(ids[r]) for r in rng.choice(es.n, count, replace=False)]
    out: dict = {}
    only = set(filter(None, args.only.split(",")))

    def want(name):
        return not only or name in only

    if want("grid_deep"):
        order = paging.SortOrder(*browse.parse_sort(""))
        qs = browse.filtered_galaxies(survey, [], order.key)
        cursors = []
        for row in rng.integers(es.n // 2, es.n - 200, count):   # deep pages: the second half of the survey
            galaxy = Galaxy.objects.filter(survey=survey, image_index=int(row)).first()
            cursors.append(paging.encode_cursor(order, galaxy, False, int(row) // 100 + 1))
        out["grid_deep"] = _timed(client, [f"/surveys/{survey.slug}/?per=100&cursor={c}" for c in cursors])
        out["grid_first"] = _timed(client, [f"/surveys/{survey.slug}/?per=100"] * count)
        del qs
    if want("galaxy_page"):
        out["galaxy_page"] = _timed(client, [f"/galaxies/{g}/" for g in galaxies])
    if want("neighbours"):
        out["neighbours"] = _timed(client, [f"/api/search/neighbours/{g}?k=12" for g in galaxies])
    if want("cone"):
        ra, dec = rng.uniform(0, 360, count), np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, count)))
        out["cone"] = _timed(client, [f"/api/surveys/{survey.slug}/cone?ra={a:.5f}&dec={d:.5f}&radius=0.2"
                                      for a, d in zip(ra, dec)])
    if want("thumbnail"):
        out["thumbnail_remote_uncached"] = _timed(client, [f"/thumbs/{g}.png" for g in galaxies])
        out["thumbnail_remote_cached"] = _timed(client, [f"/thumbs/{g}.png" for g in galaxies])
    if lm is not None and want("tiles") and map_tiles.tiled(lm):
        tr = map_tiles.reader(lm)
        info = map_tiles.tiles_info(lm)
        xy = np.asarray(load_coords(lm)[rng.choice(es.n, count, replace=False)])
        version = info["version"]
        base = f"/api/maps/{lm.pk}/tiles/{version}"
        z_out = min(1, tr.manifest["density_levels"])
        tx, ty = tile_xy(xy, tr.box, z_out)
        out["tile_zoomed_out"] = _timed(client, [f"{base}/density/{z_out}/{x}/{y}" for x, y in zip(tx, ty)])
        z_deep = tr.manifest["point_levels"]
        tx, ty = tile_xy(xy, tr.box, z_deep)
        out["tile_deep"] = _timed(client, [f"{base}/points/{z_deep}/{x}/{y}?format=bin" for x, y in zip(tx, ty)])
        out["tile_levels"] = {"density": tr.manifest["density_levels"], "points": z_deep}
    task = Task.objects.filter(embedding_set=es).order_by("-pk").first()
    if task is not None and want("labeling_next"):
        out["labeling_next"] = _timed(client, [f"/api/tasks/{task.pk}/queue?n=1"] * count)
    score_set = ScoreSet.objects.filter(embedding_set=es, status="ready").order_by("-pk").first()
    if score_set is not None and want("anomaly_next"):
        out["anomaly_next"] = _timed(client, [f"/api/anomalies/score-sets/{score_set.pk}/queue/?n=1"] * count)
    requests = sum(e["requests"] + 1 for e in out.values() if isinstance(e, dict) and "requests" in e)
    if only:   # a top-up measurement (tiles, anomaly next): its RSS is not the web figure
        return {"endpoints": {k: v for k, v in out.items() if isinstance(v, dict) and ("p95_ms" in v or "error" in v)},
                "tile_levels": out.get("tile_levels"), "requests": requests}
    while requests < 200:   # the "RSS after 200 requests": top up with galaxy pages
        client.get(f"/galaxies/{galaxies[requests % len(galaxies)]}/")
        requests += 1
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    rss = int(status["VmRSS"].split()[0]) / 1024
    hwm = int(status["VmHWM"].split()[0]) / 1024
    return {"endpoints": {k: v for k, v in out.items() if isinstance(v, dict) and ("p95_ms" in v or "error" in v)},
            "tile_levels": out.get("tile_levels"), "requests": requests,
            "rss_mb": round(rss, 1), "peak_rss_mb": round(hwm, 1)}


def child_recall(args) -> dict:
    """recall@50 of the app's index (what the neighbours API returns) against exact cosine search."""
    import faiss
    import numpy as np

    from webapp.embeddings.services.search import get_index
    from webapp.embeddings.services.vectors import load_embedding_set

    es, _ = _latest()
    _, vectors, _ = load_embedding_set(es)
    index = get_index(es)
    rng = np.random.default_rng(2)
    rows = np.sort(rng.choice(es.n, args.queries, replace=False))
    k = 50
    t = time.perf_counter()
    found = [set(int(r) for r in index.query_by_id(int(row), k)[1]) for row in rows]
    app_seconds = time.perf_counter() - t

    def unit(block):
        block = np.asarray(block, dtype=np.float32)
        return block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)

    queries = unit(vectors[rows])
    best_d = np.full((len(rows), k + 1), -np.inf, dtype=np.float32)
    best_i = np.full((len(rows), k + 1), -1, dtype=np.int64)
    t = time.perf_counter()
    chunk = 500_000
    for start in range(0, es.n, chunk):
        flat = faiss.IndexFlatIP(es.dim)
        flat.add(unit(vectors[start:start + chunk]))
        d, i = flat.search(queries, k + 1)
        d_all, i_all = np.hstack([best_d, d]), np.hstack([best_i, i + start])
        top = np.argsort(-d_all, axis=1)[:, :k + 1]
        best_d, best_i = np.take_along_axis(d_all, top, 1), np.take_along_axis(i_all, top, 1)
    exact_seconds = time.perf_counter() - t
    hits = 0
    for q, row in enumerate(rows):
        truth = [int(i) for i in best_i[q] if i != row][:k]
        hits += len(found[q] & set(truth))
    return {"recall_at_50": round(hits / (k * len(rows)), 4), "queries": len(rows),
            "index_kind": type(index).__name__, "app_query_ms_mean": round(app_seconds / len(rows) * 1000, 2),
            "exact_seconds": round(exact_seconds, 1)}


if __name__ == "__main__":
    main()
