"""The progress callback every long computation takes, and spans of a parent's bar.

``progress(done, total, message="")`` reports ``done`` of ``total`` units.  Only a Celery
task binds it to a Job row (webapp.jobs.services.Progress, which can also record metrics
and tell that a user cancelled); everything else just calls it.  Pure Python: ml/ and
the services share it.
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: float, total: float, message: str = "") -> None: ...


class Span:
    """A callback that maps 0..total of a sub-step onto [lo, hi] of ``parent``'s bar.

    Anything else (``metric``, ``check_cancelled``, ``flush``) is the parent's, so a span of
    a job's callback still records the loss curve and still notices a cancel."""

    def __init__(self, parent: Progress, lo: float, hi: float):
        self.parent, self.lo, self.hi = parent, lo, hi

    def __call__(self, done: float, total: float, message: str = "") -> None:
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        self.parent(self.lo + (self.hi - self.lo) * fraction, 1.0, message)

    def __getattr__(self, name: str):
        return getattr(self.parent, name)


def span(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """``progress`` narrowed to [lo, hi] of its bar (fractions of 1); None stays None."""
    return None if progress is None else Span(progress, lo, hi)


def check_cancelled(progress: Progress | None) -> None:
    """Raise now if the callback belongs to a job a user cancelled (plain functions never do)."""
    check = getattr(progress, "check_cancelled", None)
    if check is not None:
        check()
