"""Every figure can be rerun exactly: each benchmarks/results/*.json names the command that
wrote it (an existing script), the git commit it was run at (in this checkout's history),
package versions and wall time (null only in backfilled files), and a well-formed goals
block whose verdicts agree with their values. Plus: the benchmark cache key changes when the
ml/ source does, and the tuning / reporting split is disjoint and deterministic."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
BENCHMARKS = ROOT / "benchmarks"
TARGET = re.compile(r"^(<=|>=|<|>|==) (-?[0-9]+(?:\.[0-9]+)?)$")
OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
       ">=": lambda a, b: a >= b, "==": lambda a, b: a == b}


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _is_git_checkout() -> bool:
    try:
        return _git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true"
    except OSError:
        return False


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_results():
    assert RESULTS, "benchmarks/results/*.json is empty"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_result_names_an_existing_script(path):
    body = _load(path)
    command = body.get("command")
    assert isinstance(command, str) and command, f"{path.name}: no command"
    scripts = re.findall(r"((?:benchmarks|tests)/[\w/]+\.py)", command)
    assert scripts, f"{path.name}: command {command!r} names no benchmarks/*.py or tests/*.py script"
    for script in scripts:
        assert (ROOT / script).is_file(), f"{path.name}: {script} does not exist"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_result_records_provenance(path):
    body = _load(path)
    for key in ("git", "packages", "wall_seconds", "machine", "argv"):
        assert key in body, f"{path.name}: no {key!r}"
    assert set(body["git"]) >= {"commit", "dirty"}
    assert re.fullmatch(r"[0-9a-f]{40}", body["git"]["commit"] or ""), f"{path.name}: git.commit is not a sha"
    if "provenance" in body:  # backfilled: fields nobody recorded are null, and it says so
        assert body["provenance"].startswith("backfilled"), path.name
        assert body["git"]["dirty"] is None
    else:  # written by common.write_result: everything measured, from a clean committed tree
        assert body["git"]["dirty"] is False, f"{path.name}: run from a tree with uncommitted changes"
        assert isinstance(body["argv"], list) and body["argv"], path.name
        assert isinstance(body["packages"], dict) and "numpy" in body["packages"], path.name
        assert isinstance(body["wall_seconds"], (int, float)) and body["wall_seconds"] >= 0, path.name
    if body["wall_seconds"] is not None:
        assert body["wall_seconds"] >= 0


@pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout")
@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_result_commit_is_in_the_history(path):
    commit = _load(path)["git"]["commit"]
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, f"{path.name}: {commit} is not a commit here"
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, \
        f"{path.name}: {commit} is not an ancestor of HEAD"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_goals_block_is_uniform_and_consistent(path):
    goals = _load(path).get("goals")
    if goals is None:
        pytest.skip("judges no goal")
    assert isinstance(goals, dict) and goals, f"{path.name}: empty goals block"
    for name, entry in goals.items():
        assert set(entry) == {"value", "target", "met"}, f"{path.name}: {name}: {entry}"
        match = TARGET.match(entry["target"])
        assert match, f"{path.name}: {name}: target {entry['target']!r} is not '<op> <number>'"
        if entry["value"] is None:
            assert entry["met"] is None, f"{path.name}: {name}: met without a value"
            continue
        assert isinstance(entry["value"], (int, float)) and isinstance(entry["met"], bool), f"{path.name}: {name}"
        expected = OPS[match.group(1)](float(entry["value"]), float(match.group(2)))
        assert entry["met"] == expected, f"{path.name}: {name}: met={entry['met']} but {entry['value']} " \
                                         f"{entry['target']} is {expected}"


@pytest.mark.parametrize("path", [p for p in RESULTS if p.stem.split("_tuning")[0] in
                                  ("embed_quality", "anomaly", "active_learning")], ids=lambda p: p.name)
def test_split_benchmarks_record_their_split(path):
    body = _load(path)
    if "provenance" in body:
        pytest.skip("backfilled: written before the tuning / reporting split")
    assert body["split"] == ("tuning" if path.stem.endswith("_tuning") else "reporting")


# ------------------------------------------------------------------ benchmarks/ helpers

@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common
    import datasets
    return common, datasets


def test_cache_key_changes_when_ml_source_changes(bench, tmp_path, monkeypatch):
    _, datasets = bench
    fake_ml = tmp_path / "ml"
    shutil.copytree(ROOT / "ml", fake_ml, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(datasets, "ML_DIR", fake_ml)
    images = np.zeros((8, 3, 16, 16), np.float32)
    key = lambda: datasets.ssl_cache_key("gz1", images, datasets.GZ1_RECIPE, "rgb", ("R", "G", "B"))  # noqa: E731
    before, sim_before = key(), datasets.sim_source_hash()
    assert key() == before                        # deterministic
    with (fake_ml / "encoders.py").open("a") as f:
        f.write("\n# a change to the encoder code\n")
    assert key() != before                        # the cached encoder would not be reused
    assert datasets.sim_source_hash() == sim_before   # the simulator did not change
    with (fake_ml / "simulate.py").open("a") as f:
        f.write("\n# a change to the simulator\n")
    assert datasets.sim_source_hash() != sim_before


def test_gz1_halves_are_disjoint_stratified_and_deterministic(bench):
    _, datasets = bench
    rng = np.random.default_rng(0)
    objids = np.array([str(587722981736120000 + i) for i in rng.choice(10**6, 1000, replace=False)])
    classes = rng.choice(6, 1000, p=[0.6, 0.15, 0.1, 0.1, 0.03, 0.02])
    halves = datasets.gz1_halves(objids, classes)
    assert set(halves) == {"A", "B"}
    for c in range(6):
        counts = [np.sum((classes == c) & (halves == h)) for h in "AB"]
        assert abs(counts[0] - counts[1]) <= 1        # stratified by class
    order = rng.permutation(1000)                     # independent of row order
    assert (datasets.gz1_halves(objids[order], classes[order]) == halves[order]).all()

    class Fake:
        pass
    fake = Fake()
    fake.objids, fake.classes = objids, classes
    a, b = datasets.gz1_split_mask(fake, "tuning"), datasets.gz1_split_mask(fake, "reporting")
    assert not (a & b).any() and (a | b).all()
    assert not set(datasets.SIM_SEEDS["tuning"]) & set(datasets.SIM_SEEDS["reporting"])


def test_write_result_adds_provenance_and_checks_goals(bench, tmp_path, monkeypatch):
    common, _ = bench
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / "anomaly.py"), "--split", "tuning"])
    path = common.write_result("example", {"goals": {"x": common.goal(1.5, "< 2")}, "figure": 1.5})
    body = json.loads(path.read_text())
    assert body["command"] == "python benchmarks/anomaly.py --split tuning"
    assert body["argv"][1:] == ["--split", "tuning"]
    assert set(body["git"]) == {"commit", "dirty"} and body["git"] == common.git_at_start()
    assert "numpy" in body["packages"] and body["wall_seconds"] >= 0
    assert "loadavg" in body["machine"]
    assert body["goals"] == {"x": {"value": 1.5, "target": "< 2", "met": True}}
    with pytest.raises(ValueError):
        common.write_result("bad", {"goals": {"x": {"value": 1, "target": "about 2", "met": True}}})
    with pytest.raises(ValueError):
        common.goal(1.0, "<2")
