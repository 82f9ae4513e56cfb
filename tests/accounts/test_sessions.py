"""Sessions from the shared cache (webapp/accounts/sessions.py, issue 16): one query fewer per
request while the cache answers; the database copy when it does not, never a 500 or a logout."""
import pytest
from django.core.cache.backends.base import BaseCache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sessions-test"}}
BROKEN = {"default": {"BACKEND": "tests.accounts.test_sessions.UnreachableCache"}}


class UnreachableCache(BaseCache):
    """A cache whose server is down: every call fails like redis-py's ConnectionError."""

    def __init__(self, location=None, params=None):
        super().__init__(params or {})

    def _down(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    get = set = add = delete = has_key = touch = clear = _down


def session_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/surveys/").status_code == 200
    return sum("django_session" in q["sql"] for q in captured.captured_queries)


def login(make_user) -> Client:
    make_user("viewer", "ann")
    client = Client()
    assert client.post("/accounts/login/", {"username": "ann", "password": "pw-ann"}).status_code == 302
    return client


def test_the_session_is_read_from_the_cache_not_the_database(settings, make_user):
    settings.CACHES, settings.SESSION_ENGINE = LOCMEM, "webapp.accounts.sessions"
    client = login(make_user)
    assert session_queries(client) == 0          # written through at login, read from the cache since
    from django.core.cache import cache
    cache.clear()                                # a flushed (or restarted) Redis
    assert session_queries(client) == 1          # one database read refills the cache ...
    assert session_queries(client) == 0          # ... and the next request reads the cache again


def test_an_unreachable_cache_falls_back_to_the_database(settings, make_user, caplog):
    settings.CACHES, settings.SESSION_ENGINE = BROKEN, "webapp.accounts.sessions"
    client = login(make_user)                    # the login itself writes only the database copy
    assert session_queries(client) == 1          # still logged in: the page renders, no 500
    assert "session cache unreachable" in caplog.text
    assert client.post("/accounts/logout/").status_code in (200, 302)
    assert client.get("/surveys/").status_code == 302    # and logging out still logs out


def settings_in_a_process(**env) -> list[str]:
    import os
    import subprocess
    import sys
    code = ("import webapp.settings as s; print(getattr(s, 'SESSION_ENGINE', 'default')); "
            "print(getattr(s, 'CACHES', {}).get('default', {}).get('LOCATION', 'none'))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LATENTSKY_CACHE_URL": "", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_settings_use_the_cache_only_with_a_redis_url():
    assert settings_in_a_process(CELERY_BROKER_URL="redis://127.0.0.1:6379/7") == \
        ["webapp.accounts.sessions", "redis://127.0.0.1:6379/7"]
    assert settings_in_a_process(CELERY_BROKER_URL="sqla+sqlite:////tmp/broker.sqlite3") == ["default", "none"]
    assert settings_in_a_process(CELERY_BROKER_URL="sqla+sqlite:////tmp/b.sqlite3",
                                 LATENTSKY_CACHE_URL="redis://127.0.0.1:6379/3") == \
        ["webapp.accounts.sessions", "redis://127.0.0.1:6379/3"]
