"""CI does not turn green by skipping: under CI=true a skipped e2e/faults/shared-data test
fails the run unless LATENTSKY_ALLOW_SKIPS names it (tests/ci_skips.py)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ci_skips

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
MISSING_CHROMIUM = "/nonexistent/chromium"
E2E_REASON = f"{MISSING_CHROMIUM} is missing: install Debian's chromium package to run e2e tests"


@pytest.fixture
def tiny_project(tmp_path):
    """tests/e2e with the real e2e conftest (its Chromium detection) and one browser test,
    plus an ordinary test that passes."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    shared_data: reads shared data\n")
    e2e = tmp_path / "tests" / "e2e"
    e2e.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "e2e" / "conftest.py", e2e / "conftest.py")
    (e2e / "test_page.py").write_text("def test_home_page_renders(browser):\n    assert browser\n")
    unit = tmp_path / "tests" / "unit"
    unit.mkdir()
    (unit / "test_ok.py").write_text("def test_arithmetic():\n    assert 1 + 1 == 2\n")
    return tmp_path


def run_pytest(project: Path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", ci_skips.ALLOW_VARIABLE)}
    # No third-party plugins (django, hypothesis, schemathesis...): only the hook under test.
    environ.update({"PYTHONPATH": str(ROOT), "CHROMIUM_PATH": MISSING_CHROMIUM, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                    **env})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
                           "-q", "tests"],
                          cwd=project, env=environ, capture_output=True, text=True, timeout=120)


def test_under_ci_a_missing_chromium_fails_the_run_and_says_why(tiny_project):
    result = run_pytest(tiny_project, CI="true")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
    assert f"[e2e] NOT ALLOWED: tests/e2e/test_page.py::test_home_page_renders: {E2E_REASON}" in result.stdout
    assert "CI=true: 1 skipped test(s) in e2e fail this run" in result.stdout


@pytest.mark.parametrize("allow", ["e2e", "faults, e2e:chromium package", " e2e : is missing "])
def test_under_ci_a_skip_named_in_the_allow_variable_passes(tiny_project, allow):
    result = run_pytest(tiny_project, CI="true", LATENTSKY_ALLOW_SKIPS=allow)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert f"[e2e] allowed: tests/e2e/test_page.py::test_home_page_renders: {E2E_REASON}" in result.stdout


def test_an_allow_entry_for_another_reason_does_not_cover_this_skip(tiny_project):
    result = run_pytest(tiny_project, CI="true", LATENTSKY_ALLOW_SKIPS="e2e:playwright is not installed,faults")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout


def test_outside_ci_the_skip_is_listed_but_the_run_passes(tiny_project):
    result = run_pytest(tiny_project)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert f"[e2e] skipped: tests/e2e/test_page.py::test_home_page_renders: {E2E_REASON}" in result.stdout


def test_parse_allowed():
    assert ci_skips.parse_allowed("e2e, faults:needs root ,,") == [("e2e", ""), ("faults", "needs root")]
