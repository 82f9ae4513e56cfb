"""Turn a database outage into a clear, retryable 503 instead of a bare 500.

While PostgreSQL restarts, requests fail with OperationalError/InterfaceError.
The client is told plainly that nothing was stored by this request and that it
may retry (the label and review endpoints are safe to retry).  Django's
CONN_HEALTH_CHECKS then gives the next request a fresh connection, so the web
process recovers on its own once the database is back.
"""
from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import JsonResponse
from django.template.loader import render_to_string
from django.http import HttpResponse

log = logging.getLogger(__name__)
# The errors Django raises when the database server is unreachable or the connection dropped.
DATABASE_OUTAGE_ERRORS = (OperationalError, InterfaceError)
MESSAGE = "The database is unavailable right now; this request was not stored. Please retry in a few seconds."


def is_database_outage(exception) -> bool:
    return isinstance(exception, DATABASE_OUTAGE_ERRORS)


def database_unavailable_response(request, exception) -> HttpResponse:
    """A 503 (JSON for the API, a plain page otherwise) that says nothing was stored."""
    log.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
    wants_json = request.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")
    if wants_json:
        response = JsonResponse({"error": MESSAGE, "retry": True}, status=503)
    else:  # rendered without base.html: its context processors would query the database again
        response = HttpResponse(render_to_string("503.html", {"message": MESSAGE}), status=503)
    response["Retry-After"] = "5"
    return response


class DatabaseUnavailableMiddleware:
    """Catches outages inside views (webapp.views.server_error catches those in other middleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_outage(exception):
            return database_unavailable_response(request, exception)
        return None
