"""Shared helpers for benchmark scripts: machine info, result files, plain-text tables.

Every result file written by write_result carries its provenance (benchmark protocol,
/work/shared/DESIGN.md): the command and argv as run from the repository root, the git commit
and whether the tracked files (other than benchmarks/results/) had uncommitted changes, the
package versions, the wall time since the process started, and the machine with its load
average. A benchmark that judges a goal adds a uniform block (see goal()):

    "goals": {"<name>": {"value": 0.0, "target": "<op> <number>", "met": false}}
"""
from __future__ import annotations

import json
import operator
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `python benchmarks/x.py` can import ml/
    sys.path.insert(0, str(ROOT))

STARTED = time.time()  # when this module was first imported (benchmarks import it first)
PACKAGES = ("numpy", "scipy", "torch", "scikit-learn", "faiss-cpu", "faiss-gpu", "faiss", "umap-learn",
            "numba", "pynndescent", "django", "celery", "astropy", "galsim", "kornia", "pillow", "h5py",
            "bokeh", "threadpoolctl", "psycopg", "psycopg2-binary", "redis", "playwright", "matplotlib")
TARGET_RE = re.compile(r"^(<=|>=|<|>|==) (-?[0-9]+(?:\.[0-9]+)?)$")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def process_start_time() -> float:
    """Epoch seconds when this process started (Linux /proc), else when common was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return STARTED


def git_info(root: Path = ROOT) -> dict[str, Any]:
    """{"commit": HEAD sha, "dirty": uncommitted changes to tracked files outside benchmarks/results/};
    nulls when this is not a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (importlib.metadata) of the packages the benchmarks depend on."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def command_line(argv: Sequence[str] | None = None) -> str:
    """sys.argv as a command run from the repository root: 'python benchmarks/x.py --flag'."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = str(script.resolve().relative_to(ROOT))
        except ValueError:
            pass
    return " ".join(["python", *argv])


_GIT_AT_START: dict[str, Any] | None = None


def git_at_start() -> dict[str, Any]:
    """git_info() when this process first asked (benchmarks: when they import common), so a
    commit made while a long run is going does not relabel its result."""
    global _GIT_AT_START
    if _GIT_AT_START is None:
        _GIT_AT_START = git_info()
    return _GIT_AT_START


def provenance() -> dict[str, Any]:
    """The fields write_result adds to every result file: git is the state when the run began;
    "git_at_write" is added only if HEAD or the dirty flag changed before the result was written."""
    start, now = git_at_start(), git_info()
    out = {"command": command_line(), "argv": list(sys.argv), "git": start,
           "packages": package_versions(), "wall_seconds": round(time.time() - process_start_time(), 1)}
    if now != start:
        out["git_at_write"] = now
    return out


def goal(value: Any, target: str) -> dict[str, Any]:
    """One entry of a "goals" block: {"value", "target": "<op> <number>", "met"} (met None if value is None)."""
    match = TARGET_RE.match(target)
    if not match:
        raise ValueError(f"target must be '<op> <number>', got {target!r}")
    if value is None:
        return {"value": None, "target": target, "met": None}
    value = float(value)
    return {"value": value, "target": target, "met": bool(_OPS[match.group(1)](value, float(match.group(2))))}


def goal_met(entry: dict[str, Any]) -> bool | None:
    """Recompute 'met' from an entry's value and target (for tests and backfills)."""
    match = TARGET_RE.match(entry["target"])
    if match is None:
        raise ValueError(f"bad target {entry['target']!r}")
    if entry["value"] is None:
        return None
    return bool(_OPS[match.group(1)](float(entry["value"]), float(match.group(2))))


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, library versions and the torch device, for every result file."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["loadavg"] = None
    try:
        import torch
        info["torch"] = torch.__version__
        info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
        info["device"] = "cpu"
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json (atomically) with a timestamp, the machine and the
    provenance (command, argv, git commit + dirty flag, package versions, wall_seconds).
    A payload's "goals" ({name: goal(value, target)}) is checked for the uniform shape."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if "goals" not in payload:
        from goals import derive  # benchmarks/goals.py: one definition of each benchmark's goals
        derived = derive(name, payload)
        if derived:
            payload = {**payload, "goals": derived}
    for key, entry in (payload.get("goals") or {}).items():
        if set(entry) != {"value", "target", "met"} or not TARGET_RE.match(entry["target"]):
            raise ValueError(f"goal {key!r} is not {{value, target: '<op> <number>', met}}: {entry!r}")
    body = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_info(), **provenance(), **payload}
    path = RESULTS_DIR / f"{name}.json"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(body, indent=2, default=_jsonable))
    os.replace(partial, path)
    return path


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and paths -> plain JSON types."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)!r}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: Sequence[Sequence[Any]] | Sequence[dict], headers: Sequence[str]) -> None:
    """Print rows (lists, or dicts keyed by header) as an aligned plain-text table."""
    cells = [[_fmt(r.get(h, "") if isinstance(r, dict) else r[i]) for i, h in enumerate(headers)]
             for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


git_at_start()  # record the tree the run starts from
