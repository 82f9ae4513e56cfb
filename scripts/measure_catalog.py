"""Measure catalogue pages at scale on the configured database (meant for PostgreSQL).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ls_catalog \\
        .venv/bin/python scripts/measure_catalog.py insert 1000000
    DATABASE_URL=... .venv/bin/python scripts/measure_catalog.py query

``insert`` writes N synthetic galaxies into survey "measure-catalog" through
services.galaxy_rows.insert_galaxies in one transaction (time, peak RSS); ``query`` times
the grid page (service and full HTTP view) at page 1 and at a deep cursor, and cone searches.
Prints figures; writes no files.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection, transaction  # noqa: E402

SLUG = "measure-catalog"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows(n: int, seed: int = 0):
    from webapp.catalog.services.surveys import GalaxyRow
    rng = np.random.default_rng(seed)
    block = 50_000
    for start in range(0, n, block):
        m = min(block, n - start)
        ra = rng.uniform(0, 360, m)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, m)))
        mag = np.round(rng.normal(19, 1.5, m), 3)
        z = np.round(rng.uniform(0, 1, m), 4)
        for i in range(m):
            yield GalaxyRow(f"M{start + i:09d}", float(ra[i]), float(dec[i]),
                            {"mag_r": float(mag[i]), "z": float(z[i]), "label": "spiral" if i % 3 else "elliptical"})


def insert(n: int) -> None:
    from webapp.catalog.models import Galaxy, Survey
    from webapp.catalog.services.galaxy_rows import insert_galaxies
    Survey.objects.filter(slug=SLUG).delete()
    base = rss_mb()
    start = time.perf_counter()
    with transaction.atomic():
        survey = Survey.objects.create(name="Measure catalogue", slug=SLUG, bands=["r"], status="ready", n_galaxies=n)
        written = insert_galaxies(survey, rows(n), batch_size=20_000)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_galaxy")
    print(f"insert_galaxies: {written:,} rows in {seconds:.1f} s ({written / seconds:,.0f} rows/s) on "
          f"{connection.vendor}; peak RSS {rss_mb():.0f} MB (before {base:.0f} MB)")
    print("rows in table:", Galaxy.objects.filter(survey=survey).count())


def timed(func, repeat: int = 30):
    func()   # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        func()
        times.append((time.perf_counter() - t) * 1000)
    return np.percentile(times, 50), np.percentile(times, 95)


def query() -> None:
    from django.test import Client
    from django.contrib.auth import get_user_model

    from webapp.catalog.models import Survey
    from webapp.catalog.services import browse, paging, sky

    survey = Survey.objects.get(slug=SLUG)
    n = survey.n_galaxies
    per = 100
    deep_row = min(10_000 * per, n - per)   # page 10^4 equivalent (or the last page)
    user, _ = get_user_model().objects.get_or_create(username="measure-viewer")
    client = Client()
    client.force_login(user)
    print(f"survey {SLUG}: {n:,} galaxies; per page {per}; deep page starts at row {deep_row:,}")
    for sort, filters in (("", []), ("ra", []), ("-mag", []), ("mag", ["mag<18"]), ("z", []),
                          ("", ["mag_r<18"])):
        order = paging.SortOrder(*browse.parse_sort(sort))
        qs = browse.filtered_galaxies(survey, [browse.parse_filter(f) for f in filters], order.key)
        row = min(deep_row, qs.count() - per) if filters else deep_row
        deep_galaxy = paging.ordered_rows(qs, order)[row - 1]   # setup only: one OFFSET query
        cursor = paging.encode_cursor(order, deep_galaxy, False, row // per + 1)
        label = f"sort={sort or 'catalogue'} f={filters}"
        first = timed(lambda: browse.grid_page(survey, filters, sort, per, None, ""))
        deep = timed(lambda: browse.grid_page(survey, filters, sort, per, None, cursor))
        params = {"sort": sort, "per": per, "f": filters}
        http1 = timed(lambda: client.get(f"/surveys/{SLUG}/", params), repeat=15)
        httpd = timed(lambda: client.get(f"/surveys/{SLUG}/", {**params, "cursor": cursor}), repeat=15)
        page = browse.grid_page(survey, filters, sort, per, None, cursor)[0]
        print(f"{label:38s} service p50/p95 ms: page1 {first[0]:6.1f}/{first[1]:6.1f}  deep {deep[0]:6.1f}/{deep[1]:6.1f}"
              f" | HTTP page1 {http1[0]:6.1f}/{http1[1]:6.1f}  deep {httpd[0]:6.1f}/{httpd[1]:6.1f}"
              f" | count {'about ' if page.count_is_estimate else ''}{page.count:,}, deep page #{page.number:,}")
    for radius in (0.01, 0.1, 1.0, 3.0):
        cone = sky.parse_cone(150.0, 2.0, radius)
        p50, p95 = timed(lambda: sky.cone_search(survey, cone, limit=100))
        httpc = timed(lambda: client.get(f"/api/surveys/{SLUG}/cone", {"ra": 150, "dec": 2, "radius": radius}), 15)
        found = sky.cone_search(survey, cone, limit=100)[2]
        print(f"cone r={radius}°: {found:,} in cone, {len(sky.cone_ranges(cone))} healpix ranges; service p50/p95 "
              f"{p50:.1f}/{p95:.1f} ms; HTTP API {httpc[0]:.1f}/{httpc[1]:.1f} ms")
    print(f"peak RSS of this process {rss_mb():.0f} MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["insert"]:
        insert(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    elif sys.argv[1:2] == ["query"]:
        query()
    else:
        raise SystemExit(__doc__)
