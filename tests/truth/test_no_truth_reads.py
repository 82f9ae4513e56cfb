"""Static guard: no module of the app (webapp/, ml/, workers/) reads the simulator's hidden truth.

Galaxy.truth is the answer key of the simulated surveys; only benchmarks/ and tests/ may read it.
The app works from catalogue columns and people's labels, as it must for a real survey.

What counts as a read (AST, so comments and prose in docstrings do not count):
- an attribute named ``truth`` (galaxy.truth, row.truth, Galaxy.truth);
- a string that names the field or a lookup on it: "truth", "truth:class", "truth__class",
  "truth.class" (values("truth"), g["truth"], F("truth__class"), a label column "truth:...");
- a keyword argument named ``truth`` or ``truth__...`` (filter(truth__class=...), X(truth=...)).
Templates are checked for ``.truth`` and ``truth.``/``truth|`` variable use as well.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("webapp", "ml", "workers")
# The write path of the simulator, and nothing else.  Each entry says why it may name truth.
ALLOWED = {
    # The simulator's publisher: builds GalaxyRow(truth=...) from the simulated population.
    "webapp/catalog/services/simulation.py",
    # publish_survey stores GalaxyRow.truth and compares the stored truth on an idempotent
    # re-publish (to know which rows changed); it hands truth to nobody.
    "webapp/catalog/services/surveys.py",
    # insert_galaxies, publish_survey's bulk writer (COPY / bulk_create): copies GalaxyRow.truth
    # into the new rows and returns only a count.
    "webapp/catalog/services/galaxy_rows.py",
    # The schema declares the column.
    "webapp/catalog/migrations/0001_initial.py",
}
NAME = re.compile(r"^truth($|__|:|\.)")
TEMPLATE_READ = re.compile(r"\.truth\b|\btruth(\.|\|)")


def python_files():
    for top in SCANNED:
        yield from sorted((ROOT / top).rglob("*.py"))


def truth_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) for every place ``source`` names Galaxy.truth (see the module docstring)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "truth":
            found.append((node.lineno, f"attribute .{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
            found.append((node.lineno, f"string {node.value!r}"))
        elif isinstance(node, ast.keyword) and node.arg and NAME.match(node.arg):
            found.append((node.value.lineno, f"keyword {node.arg}="))
    return found


def test_the_detector_catches_each_kind_of_read_and_ignores_prose():
    leaky = ('g.truth\nGalaxy.objects.values("truth")\nx = m["truth"]\ncol = "truth:class"\n'
             'Galaxy.objects.filter(truth__class="spiral")\n"""Galaxy.truth is never shown."""\n'
             '# galaxy.truth in a comment\ntruth = exact_knn()  # a local variable of another meaning\n')
    assert sorted(line for line, _ in truth_reads(leaky)) == [1, 2, 3, 4, 5]


def test_no_app_module_reads_truth():
    offenders = []
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        offenders += [f"{rel}:{line}: {what}" for line, what in truth_reads(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_allowed_writers_exist_and_are_the_only_ones_naming_truth():
    # A stale allow-list would hide nothing today but could hide a later read: keep it exact.
    naming = {path.relative_to(ROOT).as_posix() for path in python_files()
              if truth_reads(path.read_text(encoding="utf-8"))}
    assert naming == ALLOWED


def test_no_template_reads_truth():
    templates = sorted((ROOT / "templates").rglob("*.html")) + sorted((ROOT / "webapp").rglob("templates/**/*.html"))
    assert len(templates) > 10   # the scan found the templates
    offenders = [f"{t.relative_to(ROOT)}:{n}" for t in templates
                 for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1) if TEMPLATE_READ.search(line)]
    assert offenders == []
