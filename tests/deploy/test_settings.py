"""Settings come from the environment with strict parsing; production passes check --deploy."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webapp import env

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw,expected", [("1", True), ("yes", True), ("off", False), ("FALSE", False)])
def test_env_bool_accepts(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env.env_bool("X_FLAG", default=not expected) is expected


def test_env_bool_rejects_typos(monkeypatch):
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(env.ConfigError, match="X_FLAG='ture' is not a boolean"):
        env.env_bool("X_FLAG", default=False)


def test_env_int_rejects_non_integers_and_small_values(monkeypatch):
    monkeypatch.setenv("X_N", "12MB")
    with pytest.raises(env.ConfigError, match="not an integer"):
        env.env_int("X_N", 1)
    monkeypatch.setenv("X_N", "3")
    with pytest.raises(env.ConfigError, match="must be >= 10"):
        env.env_int("X_N", 1, minimum=10)


def test_database_url_postgres():
    db = env.parse_database_url("postgres://u:p%40ss@db.example:6543/sky?sslmode=require")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == \
        ("django.db.backends.postgresql", "sky", "u", "p@ss", "db.example", "6543")
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_postgres_connections_persist_with_health_checks():
    """Issue 16: a request does not pay for a new PostgreSQL connection; a connection that
    died (a database restart) is noticed at the start of the next request and replaced."""
    db = env.parse_database_url("postgres://u@db.example/sky")
    assert db["CONN_MAX_AGE"] >= 60 and db["CONN_HEALTH_CHECKS"] is True
    from django.conf import settings
    live = settings.DATABASES["default"]
    if live["ENGINE"].endswith("postgresql"):          # the settings this run uses, when on PostgreSQL
        assert live["CONN_MAX_AGE"] >= 60 and live["CONN_HEALTH_CHECKS"] is True


def test_database_url_sqlite_absolute_and_bad_scheme():
    assert env.parse_database_url("sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    with pytest.raises(env.ConfigError, match="unsupported scheme 'mysql'"):
        env.parse_database_url("mysql://x/y")


def run_manage(args, extra_env):
    environ = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "LATENTSKY_ENV", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    environ.update(extra_env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_production_requires_secret_key(tmp_path):
    result = run_manage(["check"], {"LATENTSKY_ENV": "production", "LATENTSKY_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY is required when LATENTSKY_ENV=production" in result.stderr


@pytest.mark.slow
def test_production_settings_pass_check_deploy(tmp_path):
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], {
        "LATENTSKY_ENV": "production", "LATENTSKY_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-value-1234567890",
        "ALLOWED_HOSTS": "sky.example.org"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("raw,message", [("0", "LATENTSKY_JOB_MAX_ATTEMPTS=0 must be >= 1"),
                                         ("three", "LATENTSKY_JOB_MAX_ATTEMPTS='three' is not an integer")])
def test_job_max_attempts_is_parsed_strictly(tmp_path, raw, message):
    result = run_manage(["check"], {"LATENTSKY_DATA_DIR": str(tmp_path), "LATENTSKY_JOB_MAX_ATTEMPTS": raw})
    assert result.returncode != 0
    assert message in result.stderr
