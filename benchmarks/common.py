"""Shared helpers for benchmark scripts: machine info, result files, plain-text tables."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `python benchmarks/x.py` can import ml/
    sys.path.insert(0, str(ROOT))


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
    """Write benchmarks/results/<name>.json (atomically) with machine info and a timestamp."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    body = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_info(), **payload}
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
