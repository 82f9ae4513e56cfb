"""Exceptions for errors the server reports: each carries the server's own message.

Every Latent Sky API error is ``{"error": "<what was wrong>"}`` with an HTTP status; the
client raises the subclass for that status with ``message`` set to the server's sentence.
"""
from __future__ import annotations


class LatentSkyError(Exception):
    """An error answered by the server (or a job that failed).

    Attributes: ``message`` (the server's sentence), ``status`` (HTTP status, None for a
    failed job), ``method`` and ``url`` of the request, ``payload`` (the whole JSON reply,
    e.g. ``errors`` of a refused bulk request)."""

    def __init__(self, message: str, status: int | None = None, *, method: str | None = None,
                 url: str | None = None, payload: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.method, self.url = message, status, method, url
        self.payload = payload or {}

    @property
    def errors(self) -> list[dict]:
        """Per-row errors of a refused bulk request (empty otherwise)."""
        return list(self.payload.get("errors") or [])

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.url else ""
        return f"{self.status} {self.message}{where}" if self.status else f"{self.message}{where}"


class BadRequest(LatentSkyError):
    """400: the request was not valid (a bad parameter, a refused label...)."""


class AuthenticationFailed(LatentSkyError):
    """401: no token, or the token is unknown, expired or revoked."""


class PermissionDenied(LatentSkyError):
    """403: the token's owner lacks the role, or the token is read-only."""


class NotFound(LatentSkyError):
    """404: no such survey, galaxy, map, task, job..."""


class Conflict(LatentSkyError):
    """409: the action conflicts with the current state (a round is already training...)."""


class TooLarge(LatentSkyError):
    """413: the request body or upload is over the server's limit."""


class ServerError(LatentSkyError):
    """5xx: the server could not answer (503: database or encoder unavailable)."""


class JobFailed(LatentSkyError):
    """A job ended failed or cancelled; ``job`` is its last state."""

    def __init__(self, job):
        self.job = job
        error = job.get("error") or job.get("message") or ""
        super().__init__(f"job {job.get('id')} ({job.get('title') or job.get('kind')}) {job.get('status')}"
                         + (f": {error}" if error else ""), payload=dict(job))


STATUS_ERRORS = {400: BadRequest, 401: AuthenticationFailed, 403: PermissionDenied, 404: NotFound,
                 409: Conflict, 413: TooLarge}


def error_for(status: int) -> type[LatentSkyError]:
    if status >= 500:
        return ServerError
    return STATUS_ERRORS.get(status, LatentSkyError)
