"""The layering contracts in .importlinter hold, and each of them really fails on a violation.

import-linter reads every import statement, including imports inside functions, so a
cycle cannot be hidden by a late import.  The violation tests run lint-imports on a copy
of the tree with one bad module added.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ml", "webapp", "workers")
CONTRACTS = {
    "ml": "ml is independent of django, celery, webapp and workers",
    "layers": "Domain apps: catalog < embeddings < (anomalies | labeling) < (demo | interop)",
    "jobs": "webapp.jobs imports no domain app",
    "cycles": "No import cycles inside any app",
}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe) if exe.exists() else shutil.which("lint-imports"), "--no-cache", "--config",
           str(root / ".importlinter")]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def verdicts(output: str) -> dict[str, str]:
    """{contract key: "KEPT" | "BROKEN"} from lint-imports' summary lines."""
    found = {}
    for key, name in CONTRACTS.items():
        for line in output.splitlines():
            if line.startswith(name + " "):
                found[key] = line.rsplit(" ", 1)[-1]
    return found


def test_the_tree_keeps_every_layering_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == {key: "KEPT" for key in CONTRACTS}


# (module to add, its source): each breaks exactly one contract
VIOLATIONS = {
    "ml": {"ml/_bad.py": "import django\n"},
    "layers": {"webapp/catalog/_bad.py": "def late():\n    from webapp.labeling import models\n"},
    "jobs": {"webapp/jobs/_bad.py": "import webapp.anomalies.models\n"},
    "cycles": {"webapp/labeling/services/_bad_a.py": "from webapp.labeling.services import _bad_b\n",
               "webapp/labeling/services/_bad_b.py": "def late():\n"
                                                     "    from webapp.labeling.services import _bad_a\n"},
}


@pytest.mark.parametrize("broken", sorted(VIOLATIONS))
def test_each_contract_fails_on_a_violation(tmp_path, broken):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    for path, source in VIOLATIONS[broken].items():
        (tmp_path / path).write_text(source)
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert verdicts(result.stdout) == {key: "BROKEN" if key == broken else "KEPT" for key in CONTRACTS}
