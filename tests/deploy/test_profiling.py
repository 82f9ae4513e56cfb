"""The in-process CPU profile of benchmarks/load.py (webapp/profiling.py): off by default, one
line per request keyed by URL name, aggregated per name within a time window."""
from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings

from webapp import profiling

pytestmark = pytest.mark.unit


def test_off_by_default():
    assert django_settings.PROFILE_CPU is False
    assert "webapp.profiling.CpuProfileMiddleware" not in django_settings.MIDDLEWARE


@pytest.mark.django_db
def test_each_request_appends_its_url_name_and_cpu_ms(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.MIDDLEWARE = ["webapp.profiling.CpuProfileMiddleware", *settings.MIDDLEWARE]
    before = time.time()
    assert client.get("/healthz").status_code == 200
    client.get("/no/such/page/")
    client.get("/static/css/app.css")
    lines = [line.split("\t") for path in (tmp_path / profiling.DIRNAME).glob("cpu-*.tsv")
             for line in path.read_text().splitlines()]
    assert [name for _, name, _ in lines] == ["healthz", "unresolved", "static"]
    assert all(float(stamp) >= before - 1 and float(ms) >= 0 for stamp, _, ms in lines)


def test_read_profiles_aggregates_per_name_within_the_window(tmp_path):
    (tmp_path / "cpu-1.tsv").write_text("100.0\ta\t2.0\n200.0\ta\t4.0\n200.5\tb\t10.0\n")
    (tmp_path / "cpu-2.tsv").write_text("201.0\ta\t6.0\n300.0\ta\t99.0\n201.5\tcut sho")
    got = profiling.read_profiles(tmp_path, since=150.0, until=250.0)
    assert got == {"a": {"n": 2, "mean_ms": 5.0, "p50_ms": 5.0, "p95_ms": 5.9, "total_s": 0.01},
                   "b": {"n": 1, "mean_ms": 10.0, "p50_ms": 10.0, "p95_ms": 10.0, "total_s": 0.01}}
