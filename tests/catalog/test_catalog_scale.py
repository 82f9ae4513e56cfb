"""Catalogue pages at scale: keyset pages, HEALPix cone search, batched atomic ingest, sky columns."""
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import galaxy_rows, paging, sky, surveys
from webapp.catalog.services.galaxy_rows import insert_galaxies
from webapp.catalog.services.surveys import GalaxyRow, PublishError, SurveyPublisher, publish_survey

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture
def viewer(make_user, client):
    client.force_login(make_user("viewer"))
    return client


def bare_survey(slug="sky", n=0):
    return Survey.objects.create(name=slug.title(), slug=slug, bands=["r"], status=Survey.Status.READY, n_galaxies=n)


def tied_survey(n=57):
    """Sort keys with many ties and missing values: z in {0.1, 0.2, 0.3} or absent, ra sometimes null."""
    survey = bare_survey("ties", n)
    rows = []
    for i in range(n):
        meta = {"z": [0.1, 0.2, 0.3][i % 3]} if i % 4 else {}
        if i % 5 == 0:
            meta["mag_r"] = 17.0 + (i % 2)
        ra, dec = (None, None) if i % 7 == 3 else (float((i * 37) % 360), float((i % 9) * 10 - 40))
        rows.append(GalaxyRow(f"G{(i * 13) % n:03d}", ra, dec, meta))
    insert_galaxies(survey, rows, batch_size=10)
    return survey


def expected_order(survey, key, descending):
    galaxies = list(Galaxy.objects.filter(survey=survey))
    order = paging.SortOrder(key, descending)
    present = [g for g in galaxies if order.value_of(g) is not None]
    missing = [g for g in galaxies if order.value_of(g) is None]
    present.sort(key=lambda g: (order.value_of(g), g.pk) if order.unique is False else (order.value_of(g),),
                 reverse=descending)
    missing.sort(key=lambda g: g.pk, reverse=descending)
    return [g.pk for g in present + missing]


def walk(client, slug, sort, per=5):
    """(ids page by page following next_cursor, then following prev_cursor back from the last page)."""
    forward, pages, cursor = [], [], ""
    while True:
        reply = client.get(f"/api/surveys/{slug}/galaxies/", {"sort": sort, "per": per, "cursor": cursor}).json()
        ids = [g["id"] for g in reply["results"]]
        pages.append((reply["page"], ids))
        forward += ids
        if not reply["next_cursor"]:
            break
        cursor = reply["next_cursor"]
    back, cursor = [], reply["prev_cursor"]
    while cursor:
        reply = client.get(f"/api/surveys/{slug}/galaxies/", {"sort": sort, "per": per, "cursor": cursor}).json()
        back.append((reply["page"], [g["id"] for g in reply["results"]]))
        cursor = reply["prev_cursor"]
    return forward, pages, back


@pytest.mark.parametrize("sort", ["", "-image_index", "ra", "-ra", "z", "-z", "mag", "-mag", "source_id", "-source_id"])
def test_keyset_pages_neither_repeat_nor_skip_under_ties_and_missing_values(viewer, sort):
    survey = tied_survey()
    forward, pages, back = walk(viewer, survey.slug, sort)
    key, descending = sort.lstrip("-"), sort.startswith("-")
    assert forward == expected_order(survey, "" if key == "image_index" else key, descending)
    assert len(set(forward)) == len(forward) == 57
    assert [number for number, _ in pages] == list(range(1, 13))
    assert back == pages[-2::-1]            # previous links give the same pages, in reverse


def test_page_numbers_and_cursors_agree_and_grid_shows_cursor_links(viewer):
    survey = tied_survey()
    by_number = [g["id"] for p in (1, 2, 3) for g in viewer.get(
        f"/api/surveys/{survey.slug}/galaxies/", {"sort": "-z", "per": 5, "page": p}).json()["results"]]
    forward, _, _ = walk(viewer, survey.slug, "-z")
    assert by_number == forward[:15]
    page = viewer.get(f"/surveys/{survey.slug}/?sort=-z&per=5")
    assert page.context["next_url"].startswith("?sort=-z&per=5&cursor=")
    second = viewer.get(f"/surveys/{survey.slug}/" + page.context["next_url"])
    assert [c["galaxy"].pk for c in second.context["cells"]] == forward[5:10]
    assert second.context["page"].number == 2 and second.context["prev_url"] and second.context["first_url"]
    assert "Page 2 of 12" in second.content.decode()


def test_deep_page_uses_no_offset_and_a_bounded_number_of_queries(viewer):
    survey = tied_survey(n=400)
    cursor, counts = "", []
    for number in range(1, 100):
        with CaptureQueriesContext(connection) as ctx:
            reply = viewer.get(f"/api/surveys/{survey.slug}/galaxies/", {"sort": "ra", "per": 10, "cursor": cursor})
        assert reply.status_code == 200
        sql = " ".join(q["sql"].upper() for q in ctx.captured_queries)
        if number > 1:
            assert " OFFSET " not in sql
        counts.append(len(ctx))
        cursor = reply.json()["next_cursor"]
        if not cursor:
            break
    assert number == 40 and not cursor     # 400 rows, 10 a page, walked to the end
    assert max(counts[1:]) - min(counts[1:]) <= 1 and max(counts) <= counts[0] + 1


@pytest.mark.parametrize("query, message", [
    ("cursor=garbage", "damaged"),
    ("page=5000&per=10", "too deep"),
])
def test_bad_page_requests_are_400_with_a_reason(viewer, query, message):
    survey = tied_survey()
    reply = viewer.get(f"/api/surveys/{survey.slug}/galaxies/?{query}")
    assert reply.status_code == 400 and message in reply.json()["error"]
    page = viewer.get(f"/surveys/{survey.slug}/?{query}")
    assert page.status_code == 400 and message in page.context["error"]


def test_cursor_of_another_sort_is_refused(viewer):
    survey = tied_survey()
    cursor = viewer.get(f"/api/surveys/{survey.slug}/galaxies/", {"sort": "ra", "per": 5}).json()["next_cursor"]
    reply = viewer.get(f"/api/surveys/{survey.slug}/galaxies/", {"sort": "-ra", "per": 5, "cursor": cursor})
    assert reply.status_code == 400 and "another sort order" in reply.json()["error"]


def test_counts_are_exact_on_sqlite_and_estimated_counts_are_labelled(viewer, monkeypatch):
    survey = tied_survey()
    reply = viewer.get(f"/api/surveys/{survey.slug}/galaxies/", {"f": "z>0.15", "per": 5}).json()
    exact = Galaxy.objects.filter(survey=survey, metadata__z__gt=0.15).count()
    assert (reply["count"], reply["count_is_estimate"], reply["num_pages"]) == (exact, False, -(-exact // 5))
    monkeypatch.setattr(paging, "count_rows", lambda qs, survey, filtered: (123_456, True))
    page = viewer.get(f"/surveys/{survey.slug}/?f=z>0.15&per=5")
    assert "of about <b>123,456</b>" in page.content.decode() and "Page 1 of about 24,692" in page.content.decode()


def test_the_unfiltered_grid_takes_its_count_from_the_survey_never_count_star(viewer):
    """At 10^7 a COUNT(*) of the survey took 2.4 s on PostgreSQL: the unfiltered grid must not run one."""
    survey = tied_survey()
    Survey.objects.filter(pk=survey.pk).update(n_galaxies=Galaxy.objects.filter(survey=survey).count())
    with CaptureQueriesContext(connection) as queries:
        reply = viewer.get(f"/api/surveys/{survey.slug}/galaxies/", {"per": 5}).json()
        page = viewer.get(f"/surveys/{survey.slug}/?per=5")
    assert page.status_code == 200
    assert reply["count"] == Galaxy.objects.filter(survey=survey).count() and not reply["count_is_estimate"]
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


@pytest.mark.django_db(transaction=True)
def test_bulk_writes_refresh_the_planner_statistics_on_postgresql():
    """After a publish commits, ANALYZE has run: the planner's row count is the table's."""
    if connection.vendor != "postgresql":
        pytest.skip("ANALYZE is PostgreSQL's (elsewhere refresh_planner_statistics is a no-op)")
    rows = [GalaxyRow(f"A{i}", 10 + i / 100, 1.0, {"mag_r": 18.0}) for i in range(300)]
    publish_survey({"name": "Analysed", "bands": ["r"]}, rows, [np.zeros((300, 1, 8, 8), np.float32)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [Galaxy._meta.db_table])
        assert cursor.fetchone()[0] == 300


# ----------------------------------------------------------------- HEALPix and cone search

def random_sky(n, seed=0):
    """Uniform points on the sphere plus clumps at both poles and across RA 0/360."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    k = n // 6
    dec[:k] = 90 - rng.uniform(0, 3, k)                     # north pole cap
    dec[k:2 * k] = -90 + rng.uniform(0, 3, k)               # south pole cap
    ra[2 * k:3 * k] = rng.uniform(-2, 2, k) % 360           # across RA = 0
    dec[2 * k:3 * k] = rng.uniform(-2, 2, k)
    dec[3] = 90.0
    dec[4] = -90.0
    return ra, dec


@pytest.fixture
def sky_survey():
    survey = bare_survey("sky")
    ra, dec = random_sky(3000)
    insert_galaxies(survey, [GalaxyRow(f"P{i}", float(r), float(d), {"mag_r": 15 + i % 7})
                             for i, (r, d) in enumerate(zip(ra, dec))], batch_size=700)
    return survey


CONES = [(10.0, 20.0, 5.0), (0.0, 0.0, 1.5), (359.9, 0.5, 2.0), (0.05, -1.0, 0.7), (123.0, 89.5, 2.0),
         (300.0, 90.0, 1.0), (45.0, -89.0, 2.5), (200.0, -30.0, 10.0), (77.0, 12.0, 0.05), (180.0, 88.0, 3.0)]


@pytest.mark.parametrize("ra, dec, radius", CONES)
def test_cone_search_matches_brute_force(sky_survey, ra, dec, radius):
    rows = np.asarray(Galaxy.objects.filter(survey=sky_survey).values_list("id", "ra", "dec"))
    dist = sky.angular_distance(ra, dec, rows[:, 1], rows[:, 2])
    want = rows[dist <= radius, 0].astype(int)
    found, distances, n = sky.cone_search(sky_survey, sky.parse_cone(ra, dec, radius), limit=sky.MAX_LIMIT)
    assert n == len(want) and sorted(g.pk for g in found) == sorted(want.tolist())[:sky.MAX_LIMIT]
    assert distances == sorted(distances) and all(d <= radius for d in distances)


def test_cone_tests_cover_the_hard_places(sky_survey):
    """The brute-force comparison above is not vacuous: its cones hold galaxies near poles and RA 0."""
    counts = [sky.cone_search(sky_survey, sky.parse_cone(*c), limit=1)[2] for c in CONES]
    assert counts[2] > 10 and counts[3] > 5 and counts[4] > 30 and counts[5] > 10 and counts[6] > 30


def test_cone_search_keeps_to_its_survey_and_reads_the_healpix_index(sky_survey):
    other = bare_survey("other")
    ra, dec = random_sky(600, seed=1)
    insert_galaxies(other, [GalaxyRow(f"O{i}", float(r), float(d)) for i, (r, d) in enumerate(zip(ra, dec))])
    cone = sky.parse_cone(10.0, 20.0, 10.0)
    found, _, n = sky.cone_search(sky_survey, cone, limit=sky.MAX_LIMIT)
    assert found and {g.survey_id for g in found} == {sky_survey.pk}
    assert n == Galaxy.objects.filter(survey=sky_survey, pk__in=[
        pk for pk, r, d in Galaxy.objects.values_list("id", "ra", "dec")
        if sky.angular_distance(10.0, 20.0, np.array([r]), np.array([d]))[0] <= 10.0]).count()
    # each OR term carries the survey, so the (survey, healpix) index serves every range; with
    # "survey AND (ranges)" SQLite scanned the whole survey (1.14 s at 10^6, scale_sqlite.json)
    with CaptureQueriesContext(connection) as queries:
        sky.cone_search(sky_survey, cone, limit=5)
    candidates = queries.captured_queries[0]["sql"]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + candidates)
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + candidates)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "galaxy_survey_healpix" in plan, plan


def test_healpix_and_mag_are_filled_on_insert(sky_survey):
    g = Galaxy.objects.filter(survey=sky_survey).order_by("id")[5]
    assert g.healpix == int(sky.healpix_index([g.ra], [g.dec])[0]) and 0 <= g.healpix < 12 * 4 ** sky.HEALPIX_ORDER
    assert g.mag == g.metadata["mag_r"]


@pytest.mark.parametrize("query, message", [
    ("ra=10&dec=95&radius=1", "dec=95.0 must lie in [-90, 90]"),
    ("ra=abc&dec=0&radius=1", "is not a number"),
    ("ra=10&dec=0&radius=0", "must be above 0"),
    ("ra=10&dec=0&radius=45", "at most 10.0 degrees"),
    ("ra=10&dec=0&radius=nan", "not a finite number"),
    ("ra=400&dec=0&radius=1", "must lie in [0, 360]"),
    ("dec=0&radius=1", "give ra"),
])
def test_bad_cones_are_400_with_a_reason(viewer, sky_survey, query, message):
    reply = viewer.get(f"/api/surveys/{sky_survey.slug}/cone?{query}")
    assert reply.status_code == 400 and message in reply.json()["error"], reply.content
    page = viewer.get(f"/surveys/{sky_survey.slug}/?{query}")
    assert page.status_code == 400 and message in page.context["error"]


def test_cone_api_and_page_list_nearest_first(viewer, sky_survey):
    reply = viewer.get(f"/api/surveys/{sky_survey.slug}/cone", {"ra": 359.9, "dec": 0.5, "radius": 2, "limit": 5})
    data = reply.json()
    assert reply.status_code == 200 and len(data["results"]) == 5 and data["count"] > 5
    d = [g["distance_arcsec"] for g in data["results"]]
    assert d == sorted(d) and d[-1] <= 7200
    page = viewer.get(f"/surveys/{sky_survey.slug}/", {"ra": 359.9, "dec": 0.5, "radius": 2, "per": 5})
    assert [c["galaxy"].pk for c in page.context["cells"]] == [g["id"] for g in data["results"]]
    assert f"{data['count']}</b> galaxies within 2.0°" in page.content.decode()


# ----------------------------------------------------------------- batched, atomic ingest

SPEC = {"name": "Batched", "bands": ["g", "r"], "image_kind": "flux"}


def images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2, 8, 8)).astype(np.float32)


def galaxy_rows_for(n):
    return [GalaxyRow(f"B{i}", ra=(i * 7.3) % 360, dec=(i % 150) - 75.0, metadata={"r_mag": 16 + i % 5})
            for i in range(n)]


def store_files():
    return sorted(p.name for p in (Path(settings.DATA_DIR) / "surveys").glob("*"))


def test_batched_publish_fills_every_row_and_sky_columns(monkeypatch):
    monkeypatch.setattr(surveys, "BATCH_SIZE", 7)
    calls = []
    real = galaxy_rows.insert_galaxies

    def spy(*args, **kwargs):
        calls.append(kwargs.get("batch_size"))
        return real(*args, **kwargs)
    monkeypatch.setattr(surveys, "insert_galaxies", spy)
    survey = publish_survey(SPEC, galaxy_rows_for(50), [images(50)[i:i + 9] for i in range(0, 50, 9)])
    assert calls == [7] and survey.n_galaxies == 50
    got = list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("source_id", "healpix", "mag"))
    assert [sid for sid, _, _ in got] == [f"B{i}" for i in range(50)]
    assert all(h is not None for _, h, _ in got) and [m for _, _, m in got] == [16 + i % 5 for i in range(50)]
    assert store_files() == [Path(survey.store_path).name]    # the row spool is gone


def test_failure_in_a_later_batch_leaves_nothing_and_a_rerun_works(monkeypatch):
    monkeypatch.setattr(surveys, "BATCH_SIZE", 7)
    real, batches_seen = galaxy_rows.sky_columns, []

    def failing_sky_columns(rows):
        batches_seen.append(len(rows))
        if len(batches_seen) == 4:   # three batches of rows are already in the database
            raise OSError("disk vanished in batch 4")
        return real(rows)
    monkeypatch.setattr(galaxy_rows, "sky_columns", failing_sky_columns)
    with pytest.raises(OSError, match="batch 4"):
        publish_survey(SPEC, galaxy_rows_for(50), [images(50)])
    assert batches_seen == [7, 7, 7, 7]
    assert not Survey.objects.filter(name="Batched").exists() and not Galaxy.objects.exists()
    assert store_files() == []
    monkeypatch.setattr(galaxy_rows, "sky_columns", real)
    survey = publish_survey(SPEC, galaxy_rows_for(50), [images(50)])
    assert Galaxy.objects.filter(survey=survey).count() == 50 and survey.status == "ready"


def test_duplicate_across_batches_is_found_at_commit_and_nothing_is_written():
    with pytest.raises(PublishError, match="duplicate source_id 'B3'"):
        with SurveyPublisher(SPEC) as pub:
            pub.append(galaxy_rows_for(5), images(5))
            pub.append([GalaxyRow("X1"), GalaxyRow("B3")], images(2))
    assert not Survey.objects.exists() and store_files() == []


def test_fill_sky_columns_backfills_in_batches_and_is_rerunnable(capsys):
    survey = bare_survey("old")
    Galaxy.objects.bulk_create([Galaxy(survey=survey, source_id=f"O{i}", ra=10.0 + i, dec=-20.0, image_index=i,
                                       metadata={"mag_r": 18.5} if i % 2 else {}) for i in range(23)])
    assert not Galaxy.objects.filter(healpix__isnull=False).exists()
    call_command("fill_sky_columns", "--batch", "5")
    filled = list(Galaxy.objects.order_by("image_index").values_list("ra", "dec", "healpix", "mag"))
    assert [h for _, _, h, _ in filled] == sky.healpix_index([r for r, *_ in filled], [d for _, d, *_ in filled]).tolist()
    assert [m for *_, m in filled] == [18.5 if i % 2 else None for i in range(23)]
    assert "Filled 23 galaxies" in capsys.readouterr().out
    call_command("fill_sky_columns")
    assert "Filled 0 galaxies" in capsys.readouterr().out


@pytest.mark.parametrize("sort", ["-mag", "ra", "z"])
def test_grid_queries_do_not_grow_with_page_size_for_column_sorts(viewer, sort):
    survey = tied_survey(n=120)
    counts = []
    for per in (5, 50, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert viewer.get(f"/surveys/{survey.slug}/", {"sort": sort, "per": per}).status_code == 200
        counts.append(len(ctx))
    # At most one more query when a page runs past the last galaxy that has the key (missing ones follow).
    assert max(counts) <= min(counts) + 1
