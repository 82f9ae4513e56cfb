"""Under CI=true a skipped browser, fault-injection or shared-data test fails the run.

These suites skip themselves where a machine lacks what they need (Chromium, root, a
redis-server, ../shared/data).  On a laptop that is right; in CI it would turn the run
green while the browser or the fault tests never ran.  So every skip in a guarded suite
is listed at the end of the run, and under CI=true any skip not named in
LATENTSKY_ALLOW_SKIPS makes the exit status non-zero.

LATENTSKY_ALLOW_SKIPS is a comma-separated list; each entry is either
  a suite name            ``e2e``, ``faults`` or ``shared-data``: every skip in that suite, or
  suite:reason-substring  ``faults:mounting a tmpfs needs root``: only skips whose reason contains it.
The hooks are imported by tests/conftest.py (and loadable as ``-p tests.ci_skips``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

ALLOW_VARIABLE = "LATENTSKY_ALLOW_SKIPS"
SHARED_DATA_MARK = "shared_data"
_skips_key = pytest.StashKey[list]()


@dataclass(frozen=True)
class GuardedSkip:
    suite: str
    nodeid: str
    reason: str


def suite_of(item) -> str | None:
    """The guarded suite a test belongs to, or None."""
    parts = item.nodeid.split("::")[0].split("/")
    if parts[:2] == ["tests", "e2e"]:
        return "e2e"
    if parts[:2] == ["tests", "faults"]:
        return "faults"
    if item.get_closest_marker(SHARED_DATA_MARK) is not None:
        return "shared-data"
    return None


def parse_allowed(raw: str) -> list[tuple[str, str]]:
    """'e2e, faults:needs root' -> [('e2e', ''), ('faults', 'needs root')]."""
    entries = []
    for entry in raw.split(","):
        suite, _, reason = entry.strip().partition(":")
        if suite.strip():
            entries.append((suite.strip(), reason.strip()))
    return entries


def is_allowed(skip: GuardedSkip, allowed: list[tuple[str, str]]) -> bool:
    return any(suite == skip.suite and reason in skip.reason for suite, reason in allowed)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


def _skips(config) -> list[GuardedSkip]:
    return config.stash.setdefault(_skips_key, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        suite = suite_of(item)
        if suite:
            _skips(item.config).append(GuardedSkip(suite, item.nodeid, _skip_reason(report)))


def unallowed_skips(config) -> list[GuardedSkip]:
    allowed = parse_allowed(os.environ.get(ALLOW_VARIABLE, ""))
    return [s for s in _skips(config) if not is_allowed(s, allowed)]


def pytest_sessionfinish(session, exitstatus):
    if running_in_ci() and unallowed_skips(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = _skips(config)
    if not skips:
        return
    refused = set(unallowed_skips(config))
    strict = running_in_ci()
    terminalreporter.section("skipped browser, fault and shared-data tests", sep="=", yellow=True)
    for skip in skips:
        verdict = "NOT ALLOWED" if strict and skip in refused else ("allowed" if skip not in refused else "skipped")
        terminalreporter.write_line(f"[{skip.suite}] {verdict}: {skip.nodeid}: {skip.reason}")
    if strict and refused:
        suites = sorted({s.suite for s in refused})
        terminalreporter.write_line(
            f"CI=true: {len(refused)} skipped test(s) in {', '.join(suites)} fail this run. Install what they "
            f"need (see .ci/run), or name the skip in {ALLOW_VARIABLE} (e.g. {ALLOW_VARIABLE}={suites[0]}).",
            red=True, bold=True)
