"""Tests that measure a benchmark figure (LATENTSKY_RECORD_RESULTS=1) write it with
benchmarks/common.write_result, so the file carries the same provenance (command, argv, git
commit + dirty flag, package versions, wall time, machine) and goals block as every other
benchmarks/results/*.json."""
from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def record_result(name: str, payload: dict) -> Path:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    import common  # benchmarks/common.py

    return common.write_result(name, payload)
