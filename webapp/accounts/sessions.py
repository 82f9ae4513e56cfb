"""Sessions read from the shared cache (Redis), written through to the database (issue 16).

Django's ``cached_db`` engine, with one change: a cache that cannot be reached (Redis restarting,
a network blip) is skipped, never an error.  The database stays the source of truth, so a lost or
flushed cache costs one query per request until it is back, and nobody is logged out.  Django's
own engine already skips a failed read or write but not the write after a database read, nor a
failed delete on logout; those are the cases handled here.

Why: reading the session row was a third of an image request's CPU under the load test (an
immutable thumbnail costs a session read, a user read and a galaxy read).  settings.py turns this
engine on only where a Redis URL is configured; laptops keep plain database sessions.
"""
from __future__ import annotations

import logging

from django.contrib.sessions.backends import cached_db

log = logging.getLogger(__name__)


class _TolerantCache:
    """The cache, with every failure turned into a miss (get) or a no-op (set, delete)."""

    def __init__(self, cache):
        self._cache = cache

    def get(self, key, default=None):
        try:
            return self._cache.get(key, default)
        except Exception as exc:   # any backend error: read the database instead
            log.warning("session cache unreachable (%s); reading the database", type(exc).__name__)
            return default

    def set(self, key, value, timeout=None):
        try:
            self._cache.set(key, value, timeout)
        except Exception as exc:
            log.warning("session cache unreachable (%s); the database copy is kept", type(exc).__name__)

    def delete(self, key):
        try:
            self._cache.delete(key)
        except Exception as exc:
            log.warning("session cache unreachable (%s) on delete", type(exc).__name__)

    def __contains__(self, key):
        try:
            return key in self._cache
        except Exception:
            return False


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key=None):
        super().__init__(session_key)
        self._cache = _TolerantCache(self._cache)
