"""Hypothesis profiles for hostile-input tests.

``default`` keeps `make test` quick; ``reliability`` (HYPOTHESIS_PROFILE=reliability,
set by `make reliability`) fuzzes many more inputs.  Every fuzzed input is counted
in FUZZ_COUNTS so the reliability report can say how many inputs were tried.
"""
import collections
import json
import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("reliability", max_examples=600, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

FUZZ_COUNTS: collections.Counter = collections.Counter()


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("LATENTSKY_FUZZ_REPORT")
    if out and FUZZ_COUNTS:
        Path(out).write_text(json.dumps(dict(FUZZ_COUNTS), indent=1, sort_keys=True))
