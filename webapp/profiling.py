"""CPU time per request, measured in the web process (issue 16); off unless LATENTSKY_PROFILE_CPU=1.

With the switch on, settings put CpuProfileMiddleware first, and every request appends one line
``<unix time>\\t<url name>\\t<cpu ms>\\n`` to ``$LATENTSKY_DATA_DIR/cpu-profile/cpu-<pid>.tsv``.
The CPU ms is ``time.thread_time()`` spent by the thread that served the request (every
middleware and the view; not the bytes of a streamed file response, which the server sends after
the view returns), so a thread waiting on the database, the disk or the GIL is not charged.
benchmarks/load.py aggregates the files (``read_profiles``).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from django.conf import settings

DIRNAME = "cpu-profile"


def url_name(request) -> str:
    """The resolved URL name (namespaced, e.g. ``labeling:api_queue``), ``static`` or ``unresolved``."""
    match = getattr(request, "resolver_match", None)
    if match:
        return match.view_name or match.url_name or "unnamed"
    return "static" if request.path.startswith(settings.STATIC_URL) else "unresolved"  # whitenoise answers first


class CpuProfileMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        directory = Path(settings.DATA_DIR) / DIRNAME
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"cpu-{os.getpid()}.tsv"

    def __call__(self, request):
        start = time.thread_time()
        response = self.get_response(request)
        ms = (time.thread_time() - start) * 1000.0
        line = f"{time.time():.3f}\t{url_name(request)}\t{ms:.3f}\n".encode()
        # one O_APPEND write per request: whole lines from many threads and processes
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return response


def read_profiles(directory: Path, since: float = 0.0, until: float = float("inf")) -> dict[str, dict]:
    """{url name: {"n", "mean_ms", "p50_ms", "p95_ms", "total_s"}} over the lines of every process's
    file in ``directory`` stamped within [since, until] (unix time)."""
    samples: dict[str, list[float]] = {}
    for path in sorted(Path(directory).glob("cpu-*.tsv")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue                      # a line cut short by a killed process
            stamp, name, ms = parts
            if since <= float(stamp) <= until:
                samples.setdefault(name, []).append(float(ms))
    out = {}
    for name, values in sorted(samples.items()):
        qs = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else [values[0]] * 19
        out[name] = {"n": len(values), "mean_ms": round(statistics.fmean(values), 2),
                     "p50_ms": round(statistics.median(values), 2), "p95_ms": round(qs[18], 2),
                     "total_s": round(sum(values) / 1000.0, 2)}
    return out
