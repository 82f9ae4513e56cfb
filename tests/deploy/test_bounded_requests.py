"""Issue 14's rule, measured: no web view reads more than a bounded number of rows, or array
entries proportional to N, whatever N is.

Two worlds that differ only in size (N1 = 3,000 and N2 = 30,000 galaxies, D = 16), each built
the way a user builds one: a Parquet table imported with import_embeddings, the search index of
build_index (forced to the compressed IVF-PQ + float16 re-rank kind that serves 10^7), a map
written by the maps service's own writer (clustered random points instead of UMAP: the tiles do
not care) and tiled by build_map_tiles, anomaly scores by the scoring service, a labeling task
with 30 labels and one round, run here like a worker runs it.  Every endpoint is then requested
in both worlds in the same way, each time first "cold" (every per-process cache of the app
emptied, as in a fresh web process) and then warm, and three figures are taken per request:

* SQL queries (CaptureQueriesContext);
* database rows fetched, counted in django.db.backends.utils.CursorWrapper (see RowCounter);
* the peak of Python heap allocation (tracemalloc; numpy registers its buffers with it, so an
  argsort, boolean mask or id list of N entries shows, while memory-mapped .npy pages and faiss's
  own C++ memory do not).

The rule: the same number of queries in both worlds, rows fetched that do not grow with N, and
peak(N2) - peak(N1) < (N2 - N1) x 1 byte: less than one byte per extra galaxy, which any array,
list or dict of N entries breaks.  On failure the table of figures says which endpoint grew (run
with -s to see every endpoint's table).  Before the measured requests one request primes what a
process does once whatever the data (imports, templates), so the first world is not charged for it.

Known violations carry their cause (``Endpoint.finding``) and run as strict xfails under the same
assertion: fixing one turns it into a failure that asks for the mark to go.
"""
from __future__ import annotations

import gc
import importlib.util
import sys
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from django.db import connection, transaction
from django.db.backends import utils as db_utils
from django.test.utils import CaptureQueriesContext

ROOT = Path(__file__).resolve().parents[2]
N1, N2, D = 3_000, 30_000, 16
TILE_THRESHOLD = 1_000           # both worlds' maps are served as tiles, the way a 10^7 map is
N_LABELS = 30
CLASSES = [{"name": "a", "key": "1"}, {"name": "b", "key": "2"}, {"name": "c", "key": "3"}]
ROW_SLACK = 2                    # rows at N2 may exceed N1's by this much: counts that follow the data, not N
                                 # (which galaxy is shown, what its page finds about it); a growth is x10
BYTES_PER_EXTRA_GALAXY = 1.0     # peak(N2) - peak(N1) must stay under (N2 - N1) x this
# Each figure is the least of a few requests: a request that reads O(N) allocates it every time,
# while a one-off allocation of the process (a 142 KB blip once made a warm point tile fail on CI)
# does not recur
REPEATS = 3

# refill jobs stay queued during requests, as in production (with the conftest's inline refills a
# request that asks for one would run the O(N) strategy inside the measured request)
pytestmark = [pytest.mark.django_db, pytest.mark.refill_async]


# --------------------------------------------------------------------------------------------
# measuring one request


class RowCounter:
    """Counts rows fetched through Django's CursorWrapper while active.

    The ORM reads every result through the CursorWrapper (or its subclass CursorDebugWrapper,
    which CaptureQueriesContext switches on) that ``connection.cursor()`` / ``chunked_cursor()``
    return: SINGLE results by ``fetchone``, MULTI results by ``fetchmany`` (``cursor_iter``), raw
    SQL by ``fetchall`` or iteration.  CursorWrapper has no ``fetch*`` methods of its own: it hands
    them out through ``__getattr__``, so counting versions set on the class take precedence and are
    removed again on exit.  test_row_counter_sees_what_the_orm_fetches checks that the count equals
    what the ORM returns (values_list, in_bulk, .iterator(), count(), raw cursor)."""

    def __init__(self):
        self.rows = 0
        self._saved: dict = {}

    def __enter__(self):
        counter = self

        def fetchone(wrapper):
            with wrapper.db.wrap_database_errors:
                row = wrapper.cursor.fetchone()
            counter.rows += row is not None
            return row

        def fetchmany(wrapper, size=None):
            with wrapper.db.wrap_database_errors:
                rows = wrapper.cursor.fetchmany() if size is None else wrapper.cursor.fetchmany(size)
            counter.rows += len(rows)
            return rows

        def fetchall(wrapper):
            with wrapper.db.wrap_database_errors:
                rows = wrapper.cursor.fetchall()
            counter.rows += len(rows)
            return rows

        def iterate(wrapper):
            with wrapper.db.wrap_database_errors:
                for row in wrapper.cursor:
                    counter.rows += 1
                    yield row

        patches = {"fetchone": fetchone, "fetchmany": fetchmany, "fetchall": fetchall, "__iter__": iterate}
        for name, func in patches.items():
            self._saved[name] = db_utils.CursorWrapper.__dict__.get(name)
            setattr(db_utils.CursorWrapper, name, func)
        return self

    def __exit__(self, *exc):
        for name, old in self._saved.items():
            if old is None:
                delattr(db_utils.CursorWrapper, name)
            else:
                setattr(db_utils.CursorWrapper, name, old)
        self._saved.clear()
        return False


@dataclass
class Figures:
    queries: int
    rows: int
    peak: int        # bytes
    status: int


def measure(client, url: str, check=None) -> Figures:
    """One GET with every figure taken; the body is read inside the measurement; ``check`` then
    looks at the response (outside it)."""
    gc.collect()
    tracemalloc.start()
    try:
        with CaptureQueriesContext(connection) as queries, RowCounter() as rows:
            response = client.get(url)
            if getattr(response, "streaming", False):
                b"".join(response.streaming_content)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if check is not None and response.status_code == 200:
        check(response)
    return Figures(len(queries.captured_queries), rows.rows, peak, response.status_code)


def forget_process_caches() -> None:
    """Empty every per-process cache of the app (a fresh web process): the lru_caches of webapp/
    and ml/ modules (memory maps, id indexes, tile readers, score and prediction columns...) and
    the dict caches of search indexes, sky positions and colour layers."""
    for name, module in list(sys.modules.items()):
        if not (name.startswith("webapp.") or name.startswith("ml.")) or module is None:
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()
    from webapp.embeddings.services import map_data, search, sky
    map_data.forget_cached_layers()
    search.forget_cached_indexes()
    sky.forget_cached_positions()


# --------------------------------------------------------------------------------------------
# the two worlds


def _write_table(path: Path, n: int, d: int) -> None:
    """benchmarks/scale_table.py's clustered table (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_scale_table", ROOT / "benchmarks" / "scale_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_table(path, n, d, seed=0)


@dataclass
class World:
    n: int
    slug: str
    survey_id: int
    es_id: int
    map_id: int
    tiles_version: str
    score_set_id: int
    task_id: int
    galaxy_id: int                          # a galaxy half-way through the set (same row fraction in both)
    galaxy_radec: tuple[float, float]
    grid_cursor: str                        # a deep page: 250 rows before the end
    grid_cursor_sorted: str                 # the same depth, sorted by magnitude (descending)
    density_tile: tuple[int, int, int]      # zoomed out
    point_tile: tuple[int, int, int]        # deepest point level
    timings: dict = field(default_factory=dict)   # seconds per build step


def build_world(n: int, workdir: Path, curator) -> World:
    import time

    from ml.anomaly import AnomalyConfig
    from ml.search import IndexConfig
    from ml.tiles import TileConfig, tile_xy
    from tests.embeddings.map_factories import make_latent_map
    from webapp.anomalies.models import ScoreSet
    from webapp.anomalies.services.scoring import score_embedding_set
    from webapp.catalog.models import Galaxy
    from webapp.catalog.services import browse, paging
    from webapp.embeddings.models import EmbeddingSet
    from webapp.embeddings.services import map_tiles
    from webapp.embeddings.services.external import ImportOptions, import_embeddings
    from webapp.embeddings.services.index import build_for_set
    from webapp.jobs.models import Job
    from webapp.jobs.services import execute_job
    from webapp.labeling.models import Task
    from webapp.labeling.services import labels, queue, rounds
    from webapp.embeddings.services.vectors import load_embedding_set

    t = {"start": time.monotonic()}

    def lap(name):
        now = time.monotonic()
        t[name] = round(now - t.pop("start"), 2)
        t["start"] = now

    table = workdir / f"bounded_{n}.parquet"
    _write_table(table, n, D)
    lap("table")
    report = import_embeddings(table, ImportOptions(name=f"Bounded {n}"))
    es = EmbeddingSet.objects.get(pk=report.embedding_set_id)
    lap("import")
    # the index kind that serves 10^7 (IVF-PQ, re-ranked from float16 memmaps), not the exact
    # index these N would get by default: its request path is the one that must stay O(k)
    build_for_set(es, IndexConfig(exact_below=1_000, compressed_above=1_000, tune_recall=0.0, ivf_nprobe=16))
    es.refresh_from_db()
    lap("index")
    rng = np.random.default_rng(n)
    centres = rng.uniform(-8, 8, size=(12, 2))
    coords = (centres[rng.integers(0, 12, n)] + rng.normal(scale=0.8, size=(n, 2))).astype(np.float32)
    lm = make_latent_map(es, coords)       # write_map_coords: the maps service's own writer
    info = map_tiles.build_map_tiles(lm, TileConfig(tile_size=64, density_levels=2, points_per_tile=256))
    lm.refresh_from_db()
    lap("tiles")
    score_set = ScoreSet.objects.create(embedding_set=es)
    score_embedding_set(score_set, AnomalyConfig(methods=("iforest", "knn"), iforest_trees=50))
    score_set.refresh_from_db()
    lap("anomaly")
    task = Task.objects.create(name=f"Bounded task {n}", classes=CLASSES, embedding_set=es, round_every=0,
                               created_by=curator, batch_size=8, head_config={"kind": "logistic"})
    task.surveys.set(es.surveys.all())
    ids, vectors, _ = load_embedding_set(es)
    rows = np.sort(rng.choice(n, N_LABELS, replace=False))
    classes = np.argmax(np.asarray(vectors[rows, :3]), axis=1)   # classes the vectors can predict
    labels.record_labels(task, curator, [{"galaxy_id": int(ids[r]), "class_index": int(c)}
                                         for r, c in zip(rows, classes)])
    rnd = rounds.start_round(task, curator)
    assert execute_job(rnd.job_id, worker="test") == "succeeded", Job.objects.get(pk=rnd.job_id).error
    for job in Job.objects.filter(kind=queue.REFILL_KIND, params__task_id=task.pk, status="queued"):
        execute_job(job.pk, worker="test")           # the refill a worker would run after the round
    lap("round")

    survey = es.surveys.get()
    middle = Galaxy.objects.get(survey=survey, image_index=n // 2)
    deep = n - 250

    def cursor(sort):
        order = paging.SortOrder(*browse.parse_sort(sort))
        qs = browse.filtered_galaxies(survey, [], order.key)
        galaxy = paging.ordered_rows(qs, order)[deep - 1]          # setup only: one OFFSET query
        return paging.encode_cursor(order, galaxy, False, deep // 100 + 1)

    tr = map_tiles.reader(lm)
    xy = coords[n // 2:n // 2 + 1]
    z_out = min(1, tr.manifest["density_levels"])
    z_deep = tr.manifest["point_levels"]
    (dx,), (dy,) = tile_xy(xy, tr.box, z_out)
    (px,), (py,) = tile_xy(xy, tr.box, z_deep)
    t.pop("start")
    return World(n=n, slug=survey.slug, survey_id=survey.pk, es_id=es.pk, map_id=lm.pk,
                 tiles_version=info["version"], score_set_id=score_set.pk, task_id=task.pk,
                 galaxy_id=middle.pk, galaxy_radec=(middle.ra, middle.dec),
                 grid_cursor=cursor(""), grid_cursor_sorted=cursor("-mag_r"),
                 density_tile=(z_out, int(dx), int(dy)), point_tile=(z_deep, int(px), int(py)), timings=t)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bounded-data")


@pytest.fixture(autouse=True)
def _isolated_data_dir(world_dir, settings):
    """Replaces the conftest's per-test data directory: the worlds' files live for the module."""
    settings.DATA_DIR = world_dir
    settings.MAP_TILE_THRESHOLD = TILE_THRESHOLD
    yield world_dir


@pytest.fixture(scope="module")
def worlds(world_dir, django_db_setup, django_db_blocker):
    """Both worlds, built once for the module inside one transaction that is rolled back at the
    end (each test runs in a savepoint of it), with the module's data directory."""
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    with django_db_blocker.unblock(), override_settings(DATA_DIR=world_dir, MAP_TILE_THRESHOLD=TILE_THRESHOLD):
        with transaction.atomic():
            curator = get_user_model().objects.create(username="bounded-builder", is_superuser=True)
            built = {n: build_world(n, world_dir, curator) for n in (N1, N2)}
            yield built
            transaction.set_rollback(True)
        forget_process_caches()


# --------------------------------------------------------------------------------------------
# the endpoints, the same request in both worlds


def tile(w: World, kind: str, zxy) -> str:
    z, x, y = zxy
    return f"/api/maps/{w.map_id}/tiles/{w.tiles_version}/{kind}/{z}/{x}/{y}"


def personal_ranking(user, worlds: dict) -> None:
    """Five verdicts of ``user`` in each world and the personal re-rank a worker would run on them:
    what anomaly next serves once someone has reviewed (setup, not measured)."""
    from webapp.anomalies.models import Review, ScoreSet
    from webapp.anomalies.services.files import load_scores
    from webapp.anomalies.services.ranking import request_rerank
    from webapp.jobs.services import execute_job

    for w in worlds.values():
        score_set = ScoreSet.objects.get(pk=w.score_set_id)
        top = np.asarray(load_scores(score_set).order("combined")[:5])
        Review.objects.bulk_create([Review(user=user, galaxy_id=int(g), score_set=score_set, interest=i)
                                    for i, g in enumerate(top.tolist())])
        assert execute_job(request_rerank(user, score_set).pk, worker="test") == "succeeded"


@dataclass
class Endpoint:
    url: object                          # World -> URL
    check: object = None                 # response -> None: the request did its real work (asserts)
    prepare: object = None               # (user, worlds) -> None: setup before measuring
    finding: str = ""                    # a known violation of the rule (strict xfail until fixed)


def _json_len(key: str, n: int):
    def check(response):
        assert len(response.json()[key]) == n, response.content[:300]
    return check


def _points(response):
    assert int(response["X-Count"]) > 0


def _personal(response):
    data = response.json()
    assert data["source"] == "personal" and len(data["candidates"]) == 1, response.content[:300]


def _first(response):
    first = int(response.wsgi_request.GET["first"])
    assert [c["id"] for c in response.json()["candidates"]] == [first], response.content[:300]


def _cone_one(response):
    assert response.json()["count"] == 1, response.content[:300]


ENDPOINTS = {
    "grid_deep": Endpoint(lambda w: f"/surveys/{w.slug}/?per=100&cursor={w.grid_cursor}"),
    "grid_deep_sorted": Endpoint(lambda w: f"/surveys/{w.slug}/?per=100&sort=-mag_r&cursor={w.grid_cursor_sorted}"),
    "galaxy_page": Endpoint(lambda w: f"/galaxies/{w.galaxy_id}/"),
    "neighbours": Endpoint(lambda w: f"/api/search/neighbours/{w.galaxy_id}?k=12", _json_len("results", 12)),
    "map_page_tiled": Endpoint(lambda w: f"/maps/{w.map_id}/"),
    "tile_density": Endpoint(lambda w: tile(w, "density", w.density_tile)),
    "tile_points_deep": Endpoint(lambda w: tile(w, "points", w.point_tile) + "?format=bin", _points),
    # the points endpoint of a tiled map (the notebook client pages through it): read from the
    # point tiles (map_tiles.rows_in_view_from_tiles), O(tiles read)
    "map_points_tiled": Endpoint(
        lambda w: f"/api/maps/{w.map_id}/points?format=bin&limit=100&bbox=-1,-1,1,1", _points),
    "labeling_next": Endpoint(lambda w: f"/api/tasks/{w.task_id}/queue?n=1", _json_len("items", 1)),
    "anomaly_next": Endpoint(lambda w: f"/api/anomalies/score-sets/{w.score_set_id}/queue/?n=1",
                             _json_len("candidates", 1)),
    "anomaly_next_personal": Endpoint(lambda w: f"/api/anomalies/score-sets/{w.score_set_id}/queue/?n=1",
                                      _personal, prepare=personal_ranking),
    # the galaxy page's "review this": that galaxy first, wherever it ranks
    "anomaly_next_first": Endpoint(
        lambda w: f"/api/anomalies/score-sets/{w.score_set_id}/queue/?n=1&first={w.galaxy_id}", _first),
    # a cross-match cone at a galaxy's position: the same answer (that galaxy) in both worlds
    "cone_crossmatch": Endpoint(lambda w: (f"/api/surveys/{w.slug}/cone?ra={w.galaxy_radec[0]:.8f}"
                                           f"&dec={w.galaxy_radec[1]:.8f}&radius=0.0003&limit=10"), _cone_one),
    # the widest cone, 10 nearest: the database filters, orders and counts (sky.cone_search), so
    # the request holds `limit` rows however many galaxies the cone holds.  The same sky position
    # in both worlds: the covering HEALPix ranges (the SQL's size) depend on it, not on N
    "cone_wide": Endpoint(
        lambda w: f"/api/surveys/{w.slug}/cone?ra=180&dec=0&radius=10&limit=10", _json_len("results", 10)),
}


def run_endpoint(client, worlds: dict, endpoint: Endpoint) -> dict:
    """{(n, "cold"|"warm"): Figures}.  One request first primes what a process does once whatever
    the data (imports, templates, URL resolver), so that it is not charged to the first world."""
    client.get(endpoint.url(worlds[N1]))
    out = {}
    for n in (N1, N2):
        url = endpoint.url(worlds[n])
        cold, warm = [], []
        for _ in range(REPEATS):
            forget_process_caches()
            cold.append(measure(client, url, endpoint.check))
            warm.append(measure(client, url, endpoint.check))
        out[(n, "cold")] = min(cold, key=lambda f: f.peak)
        out[(n, "warm")] = min(warm, key=lambda f: f.peak)
    return out


def table(name: str, figures: dict) -> str:
    lines = [f"{name}: {'request':14s} {'status':>6s} {'queries':>8s} {'rows':>6s} {'peak KB':>9s}"]
    for (n, kind), f in figures.items():
        lines.append(f"{'':{len(name)}s}  N={n:<6d} {kind:5s} {f.status:6d} {f.queries:8d} {f.rows:6d} "
                     f"{f.peak / 1024:9.1f}")
    return "\n".join(lines)


def problems(figures: dict) -> list[str]:
    out = []
    budget = (N2 - N1) * BYTES_PER_EXTRA_GALAXY
    for kind in ("cold", "warm"):
        small, big = figures[(N1, kind)], figures[(N2, kind)]
        if big.status != 200 or small.status != 200:
            out.append(f"{kind}: status {small.status} / {big.status}")
        if big.queries != small.queries:
            out.append(f"{kind}: {small.queries} queries at N={N1}, {big.queries} at N={N2}")
        if big.rows > small.rows + ROW_SLACK:
            out.append(f"{kind}: {small.rows} rows fetched at N={N1}, {big.rows} at N={N2}")
        if big.peak - small.peak >= budget:
            out.append(f"{kind}: peak grew by {(big.peak - small.peak) / 1024:.1f} KB "
                       f"(budget {budget / 1024:.1f} KB, one byte per extra galaxy)")
    return out


def _case(name: str):
    finding = ENDPOINTS[name].finding
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="finding: " + finding)) if finding else name


@pytest.mark.parametrize("name", [_case(name) for name in ENDPOINTS])
def test_request_is_bounded_whatever_n(name, worlds, role_clients, fast_password_hashing):
    """Same queries, no more rows and under one byte more peak heap per extra galaxy at N2 than at
    N1, cold and warm.  An endpoint with a ``finding`` is a known violation: strict xfail, so the
    fix turns it into a failure that asks for the mark to go."""
    endpoint = ENDPOINTS[name]
    client = role_clients["admin"]              # admin holds every role
    if endpoint.prepare:
        endpoint.prepare(_user(client), worlds)
    figures = run_endpoint(client, worlds, endpoint)
    print(table(name, figures))
    found = problems(figures)
    assert not found, "\n".join(found) + "\n" + table(name, figures)


def _user(client):
    from django.contrib.auth import get_user_model
    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_row_counter_sees_what_the_orm_fetches(worlds):
    """RowCounter really sits where the ORM reads rows (and is removed afterwards)."""
    from webapp.catalog.models import Galaxy

    w = worlds[N1]
    qs = Galaxy.objects.filter(survey_id=w.survey_id).order_by("id")
    with RowCounter() as c:
        assert len(list(qs.values_list("id", flat=True)[:7])) == 7
    assert c.rows == 7
    with RowCounter() as c:
        assert len(list(qs[:250])) == 250                       # fetchmany in chunks of 100
    assert c.rows == 250
    with RowCounter() as c:
        assert sum(1 for _ in qs.only("id")[:130].iterator(chunk_size=50)) == 130
    assert c.rows == 130
    with RowCounter() as c:
        assert qs.count() == N1 and len(Galaxy.objects.in_bulk(list(qs.values_list("id", flat=True)[:5]))) == 5
    assert c.rows == 1 + 5 + 5
    with RowCounter() as c, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM catalog_galaxy WHERE survey_id = %s ORDER BY id LIMIT 3", [w.survey_id])
        assert len(cursor.fetchall()) == 3
        cursor.execute("SELECT id FROM catalog_galaxy WHERE survey_id = %s ORDER BY id LIMIT 4", [w.survey_id])
        assert len(list(cursor)) == 4
    assert c.rows == 7
    assert "fetchmany" not in db_utils.CursorWrapper.__dict__ and "__iter__" in db_utils.CursorWrapper.__dict__
