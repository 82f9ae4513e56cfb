"""Similarity search: p50/p95 single-query latency and recall@k against exact search.

    python benchmarks/search.py            # N = 1e4, 1e5, 1e6 (the 1e6 HNSW build takes minutes)
    python benchmarks/search.py --quick    # N = 1e4, 1e5
    python benchmarks/search.py --sweep    # also sweep efSearch / nprobe on each built index
    python benchmarks/search.py --embeddings emb.npy   # also real embeddings (N, D) float32
    python benchmarks/search.py --no-http  # skip the HTTP neighbours endpoint measurement

HTTP: a throw-away site on the embedded default (SQLite, gunicorn --workers 2 --threads 8 as
`make demo` runs it) with N = 1e5 galaxies (1e4 with --quick), an IVF index built by the
same service as the build_index job, and GET /api/search/neighbours/<id>?k=12 timed from a
client on the same machine: sequentially, then from 8 concurrent clients.

Synthetic data is a Gaussian mixture in a latent space mapped linearly to D=128 plus
isotropic noise, in two flavours:
  clustered: 32-d latent, N/1000 narrow clusters (like SSL embeddings of many galaxy types);
  hard:      64-d latent, N/20000 broad clusters (higher intrinsic dimension: ANN is harder).
Uniform noise would be unrealistically hard; a few tight blobs unrealistically easy.
Queries are stored rows ("galaxies like this one"), searched one at a time with
cfg.query_threads faiss threads, through SearchIndex.query (Python overhead included).
"""
from __future__ import annotations

import argparse
import dataclasses
import http.cookiejar
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import machine_info, print_table, write_result  # noqa: F401  (sets sys.path)
from ml.search import IndexConfig, SearchIndex, recall, set_faiss_threads
from scale_table import clustered_chunks


def clustered_vectors(n: int, d: int = 128, n_clusters: int = 1000, latent_dim: int = 32,
                      seed: int = 0, chunk: int = 200_000) -> np.ndarray:
    """(n, d) float32 Gaussian-mixture embeddings with uneven cluster sizes and widths
    (scale_table.clustered_chunks, gathered; same numbers as before it was split out)."""
    return np.concatenate(list(clustered_chunks(n, d, n_clusters, latent_dim, seed, chunk)))


DATASETS = {
    "clustered": dict(latent_dim=32, clusters_per=1000),
    "hard": dict(latent_dim=64, clusters_per=20000),
}


def latency_ms(index: SearchIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query wall time (ms) searching one query at a time; returns (times, ids (Q, k))."""
    for q in queries[:20]:  # warm-up: page in, lazy allocations, CPU caches
        index.query(q[None, :], k)
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, found = index.query(q[None, :], k)
        times.append((time.perf_counter() - t0) * 1000)
        ids.append(found[0])
    return np.array(times), np.stack(ids)


def sweep_values(index: SearchIndex) -> list[tuple[str, int]]:
    if hasattr(index.index, "hnsw"):
        return [("efSearch", v) for v in (32, 64, 128, 256, 512)]
    if hasattr(index.index, "nprobe"):
        return [("nprobe", v) for v in (8, 16, 32, 64, 128, 256, 512)]
    return []


def set_query_param(index: SearchIndex, name: str, value: int) -> None:
    if name == "efSearch":
        index.cfg.hnsw_ef_search = value
    else:
        index.cfg.ivf_nprobe = value
        index.index.nprobe = value


def run_one(data_name: str, x: np.ndarray, cfg: IndexConfig, n_queries: int, k: int,
            sweep: bool) -> list[dict]:
    n = len(x)
    rng = np.random.default_rng(1)
    queries = x[rng.choice(n, n_queries, replace=False)]
    exact_cfg = dataclasses.replace(cfg, exact_below=n + 1)
    exact = SearchIndex.build(x, exact_cfg)
    t_exact, truth = latency_ms(exact, queries, k)
    rows = [{"data": data_name, "N": n, "index": "flat (exact)", "build_s": 0.0,
             "p50_ms": float(np.percentile(t_exact, 50)), "p95_ms": float(np.percentile(t_exact, 95)),
             f"recall@{k}": 1.0}]
    del exact
    t0 = time.perf_counter()
    index = SearchIndex.build(x, cfg)
    build_s = time.perf_counter() - t0
    name = type(index.index).__name__
    tuned = index.tuning
    settings = [("default", None)] + (sweep_values(index) if sweep else [])
    for pname, value in settings:
        if value is not None:
            set_query_param(index, pname, value)
        t, found = latency_ms(index, queries, k)
        label = (f"{name} tuned {tuned.get('param', '')}={tuned.get('value', '')}"
                 if value is None else f"{name} {pname}={value}")
        rows.append({"data": data_name, "N": n, "index": label, "build_s": round(build_s, 1),
                     "p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
                     f"recall@{k}": recall(found, truth)})
    return rows, tuned


# ----------------------------------------------------------------- a throw-away site (also used by map.py)

ROOT = Path(__file__).resolve().parents[1]
HTTP_GOAL_P95_MS = 50.0


def site_env(data_dir: Path) -> dict:
    """Environment of the embedded default (SQLite, SQLite broker) in its own data dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update({"LATENTSKY_DATA_DIR": str(data_dir), "LATENTSKY_ENV": "development", "DEBUG": "false",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    return env


def build_site(data_dir: Path, vectors: np.ndarray, coords: np.ndarray | None = None,
               index: bool = True) -> dict:
    """Catalogue, embedding set (+ index, + map) in a fresh SQLite site, in a child process.

    Django reads its settings once per process, so the site is built by a child that
    imports this module with the site's environment (see _build_site_child).
    """
    np.save(data_dir / "bench-vectors.npy", vectors)
    if coords is not None:
        np.save(data_dir / "bench-coords.npy", coords)
    code = ("import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import search; "
            "print('RESULT', json.dumps(search._build_site_child(sys.argv[3] == '1')))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks"), str(ROOT), "1" if index else "0"],
                         cwd=ROOT, env=site_env(data_dir), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("building the benchmark site failed:\n" + out.stderr[-3000:])
    import json
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[7:])


def _build_site_child(with_index: bool) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django
    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from webapp.catalog.models import Galaxy, Survey
    from webapp.embeddings.models import EmbeddingSet, Encoder, LatentMap
    from webapp.embeddings.services.index import build_for_set
    from webapp.embeddings.services.maps import write_map_coords
    from webapp.embeddings.services.vectors import write_embedding_set

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="bench-pass")
    user.groups.add(Group.objects.get(name="viewer"))
    vectors = np.load(Path(settings.DATA_DIR) / "bench-vectors.npy", mmap_mode="r")
    n = len(vectors)
    t0 = time.perf_counter()
    survey = Survey.objects.create(name="Benchmark survey", slug="bench", bands=["g", "r", "i"], status="ready",
                                   n_galaxies=n, image_shape=[n, 3, 64, 64], image_checksum="bench")
    rng = np.random.default_rng(0)
    ra, dec, mag = rng.uniform(140, 160, n), rng.uniform(-5, 5, n), rng.uniform(14, 22, n)
    labels = ("elliptical", "spiral", "edge-on", "merger")
    for start in range(0, n, 20_000):
        Galaxy.objects.bulk_create([
            Galaxy(survey=survey, source_id=f"B{i:07d}", ra=float(ra[i]), dec=float(dec[i]), image_index=i,
                   metadata={"mag_r": round(float(mag[i]), 2), "label": labels[i % 4]})
            for i in range(start, min(n, start + 20_000))])
    ids = np.array(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))
    es = EmbeddingSet.objects.create(encoder=Encoder.objects.create(name="bench", method="simclr", status="ready"),
                                     name=f"benchmark {n}")
    es.surveys.add(survey)
    write_embedding_set(es, ids, np.asarray(vectors))
    catalogue_s = time.perf_counter() - t0
    index_s = None
    if with_index:
        t0 = time.perf_counter()
        build_for_set(es)
        index_s = time.perf_counter() - t0
    result = {"embedding_set_id": es.pk, "galaxy_ids": [int(i) for i in ids[:: max(1, n // 2000)]],
              "catalogue_s": round(catalogue_s, 1), "index_s": index_s and round(index_s, 1),
              "index": EmbeddingSet.objects.get(pk=es.pk).index_kind}
    coords_file = Path(settings.DATA_DIR) / "bench-coords.npy"
    if coords_file.exists():
        lm = LatentMap.objects.create(embedding_set=es, params={"source": "benchmark"}, n=n)
        write_map_coords(lm, np.load(coords_file))
        from webapp.embeddings.services.sky import sky_index
        sky_index(es)  # the umap job leaves this positions cache behind too
        result["map_id"] = lm.pk
    return result


class Server:
    """gunicorn as `make demo` runs it, on a free port; a context manager."""

    def __init__(self, data_dir: Path, workers: int = 2, threads: int = 8):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{self.port}",
                     "--workers", str(workers), "--threads", str(threads), "--timeout", "300"]
        self.env = site_env(data_dir)
        self.log = open(data_dir / "gunicorn.log", "w")

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(120):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit("gunicorn did not start; see gunicorn.log")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def login(base: str, username: str = "bench", password: str = "bench-pass") -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/accounts/login/").read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
    opener.open(urllib.request.Request(base + "/accounts/login/", data=body,
                                       headers={"Referer": base + "/accounts/login/"})).read()
    opener.jar = jar
    return opener


def _timed_get(opener, url: str) -> float:
    t0 = time.perf_counter()
    with opener.open(url) as response:
        response.read()
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}")
    return (time.perf_counter() - t0) * 1000


def http_neighbours(n: int, dim: int, queries: int) -> list[dict]:
    """p50/p95 of GET /api/search/neighbours/<id>?k=12 on a gunicorn + SQLite site of n galaxies."""
    x = clustered_vectors(n, dim, n_clusters=max(5, n // 1000))
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        site = build_site(Path(tmp), x)
        print(f"site: {n:,} galaxies in {site['catalogue_s']} s, {site['index']} index in {site['index_s']} s")
        rng = np.random.default_rng(2)
        with Server(Path(tmp)) as server:
            opener = login(server.base)
            url = server.base + "/api/search/neighbours/{}?k=12"
            ids = site["galaxy_ids"]
            with ThreadPoolExecutor(8) as pool:  # warm-up: every worker process loads the index once
                list(pool.map(lambda g: _timed_get(opener, url.format(g)), ids[:64]))
            picks = [int(g) for g in rng.choice(ids, queries)]
            sequential = np.array([_timed_get(opener, url.format(g)) for g in picks])
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                concurrent = np.array(list(pool.map(lambda g: _timed_get(opener, url.format(g)), picks)))
            throughput = len(picks) / (time.perf_counter() - t0)
    rows = []
    for name, t in (("sequential", sequential), ("8 concurrent clients", concurrent)):
        rows.append({"N": n, "clients": name, "p50_ms": float(np.percentile(t, 50)),
                     "p95_ms": float(np.percentile(t, 95)), "requests": len(t),
                     "req_per_s": round(throughput, 1) if name != "sequential" else round(1000 / t.mean(), 1),
                     "index": site["index"], "goal_p95_ms": HTTP_GOAL_P95_MS,
                     "meets_goal": bool(np.percentile(t, 95) < HTTP_GOAL_P95_MS)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip N = 1e6")
    ap.add_argument("--sweep", action="store_true", help="sweep efSearch / nprobe")
    ap.add_argument("--kind", choices=["hnsw", "ivf"], default=None, help="override cfg.kind")
    ap.add_argument("--hnsw-m", type=int, default=None)
    ap.add_argument("--ef-construction", type=int, default=None)
    ap.add_argument("--sizes", type=str, default=None, help="comma list of N, e.g. 10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--data", type=str, default="clustered,hard", help="synthetic families")
    ap.add_argument("--embeddings", type=str, default=None, help=".npy (N, D) real embeddings")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP neighbours endpoint")
    ap.add_argument("--http-n", type=int, default=None, help="galaxies in the HTTP site (default 1e5; 1e4 quick)")
    ap.add_argument("--out", type=str, default=None,
                    help="result name (default: search, or search_quick with --quick)")
    args = ap.parse_args()

    cfg = IndexConfig()
    if args.kind:
        cfg.kind = args.kind
    if args.hnsw_m:
        cfg.hnsw_m = args.hnsw_m
    if args.ef_construction:
        cfg.hnsw_ef_construction = args.ef_construction
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [10_000, 100_000] + ([] if args.quick else [1_000_000]))
    # Small N is searched exactly by design; force the approximate index so its recall
    # and latency are measured at every size too.
    bench_cfg = dataclasses.replace(cfg, exact_below=0)
    rows, tunings = [], []
    for family in args.data.split(","):
        spec = DATASETS[family]
        for n in sizes:
            x = clustered_vectors(n, args.dim, n_clusters=max(5, n // spec["clusters_per"]),
                                  latent_dim=spec["latent_dim"])
            new, tuned = run_one(family, x, bench_cfg, min(args.queries, n), args.k, args.sweep)
            rows += new
            tunings.append({"data": family, "N": n, **tuned})
            del x
    if args.embeddings:
        x = np.load(args.embeddings, mmap_mode="r")
        new, tuned = run_one(args.embeddings, np.asarray(x, dtype=np.float32), bench_cfg,
                             min(args.queries, len(x)), args.k, args.sweep)
        rows += new
        tunings.append({"N": len(x), "data": args.embeddings, **tuned})
    set_faiss_threads(cfg.query_threads)
    headers = ["data", "N", "index", "build_s", "p50_ms", "p95_ms", f"recall@{args.k}"]
    print(f"query threads: {cfg.query_threads}; build threads: {cfg.build_threads or 'all'}")
    print_table(rows, headers)
    http_rows = []
    if not args.no_http:
        http_rows = http_neighbours(args.http_n or (10_000 if args.quick else 100_000), args.dim, args.queries)
        print("\nHTTP GET /api/search/neighbours/<id>?k=12 (gunicorn 2x8, SQLite):")
        print_table(http_rows, ["N", "clients", "index", "p50_ms", "p95_ms", "req_per_s", "meets_goal"])
    name = args.out or ("search_quick" if args.quick else "search")  # quick runs keep the full result
    path = write_result(name, {"quick": args.quick, "config": dataclasses.asdict(cfg), "k": args.k,
                                   "queries": args.queries, "dim": args.dim,
                                   "query_threads": cfg.query_threads, "rows": rows,
                                   "tuning": tunings, "http": http_rows,
                                   # 2 shared cores: other work on the machine inflates latencies
                                   "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
                                   "datasets": DATASETS})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
