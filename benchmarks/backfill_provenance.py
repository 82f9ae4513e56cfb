"""One-off: add provenance and a goals block to result files written before they existed.

    python benchmarks/backfill_provenance.py            # every benchmarks/results/*.json without "git"
    python benchmarks/backfill_provenance.py --dry-run  # print what it would add

Nothing is invented: "command" is the command the README or the script's docstring gave for
that file at the time; "git.commit" is the commit that last wrote the file (git log);
"git.dirty", "argv" and, when the file recorded no versions, "packages" are null; "packages"
otherwise holds only the versions the file's machine block recorded (torch, numpy);
"wall_seconds" is the script's own recorded duration where it kept one ("seconds" /
"total_seconds"), else null. "provenance" says it was backfilled. Goals are computed from
the figures in the file with benchmarks/goals.py (the same functions new runs use), or, for
the three split benchmarks' old layouts, below. A file that already has "git" is left alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time

from common import RESULTS_DIR, ROOT, goal
from goals import derive

COMMANDS = {
    "active_learning": "python benchmarks/active_learning.py",
    "active_learning_quick": "python benchmarks/active_learning.py --quick",
    "active_learning_quick_pca": "python benchmarks/active_learning.py --quick --features pca",
    "active_learning_round_timing": "python benchmarks/active_learning_synthetic.py --round-timing",
    "active_learning_round_timing_postgres": "python benchmarks/active_learning_synthetic.py --round-timing "
                                             "--database-url <PostgreSQL URL> --name active_learning_round_timing_postgres",
    "active_learning_synthetic": "python benchmarks/active_learning_synthetic.py",
    "active_learning_synthetic_coldstart": "python benchmarks/active_learning_synthetic.py --initial-strategy cold_start "
                                           "--name active_learning_synthetic_coldstart",
    "active_learning_synthetic_quick": "python benchmarks/active_learning_synthetic.py --quick",
    "active_learning_timing": "python benchmarks/active_learning_synthetic.py --timing-only",
    "anomaly": "python benchmarks/anomaly.py",
    "anomaly_quick": "python benchmarks/anomaly.py --quick",
    "anomaly_scores": "python benchmarks/anomaly_scores.py",
    "embed_quality": "python benchmarks/embed_quality.py",
    "embed_quality_gz1_64px": "python benchmarks/embed_quality.py --only gz1 --image-size 64 --tag gz1_64px",
    "grid_load": "python benchmarks/grid_load.py",
    "load": "python benchmarks/load.py",
    "load_quick": "python benchmarks/load.py --quick",
    "map": "python benchmarks/map.py",
    "map_quick": "python benchmarks/map.py --quick",
    "reliability": "python benchmarks/reliability.py",
    "search": "python benchmarks/search.py",
    "simulate": "python benchmarks/simulate.py",
    "throughput": "python benchmarks/throughput.py",
    "transfer": "python benchmarks/transfer.py",
    "transfer_quick": "python benchmarks/transfer.py --quick",
    "transfer_quick_pca": "python benchmarks/transfer.py --quick --features pca",
}


def legacy_goals(name: str, body: dict) -> dict:
    """Goals of the pre-split layouts of embed_quality, anomaly and active_learning."""
    if name.startswith("embed_quality"):
        g = (body.get("results") or {}).get("gz1", {}).get("goal")
        if not g:
            return {}
        return {f"gz1_{p}_balanced_gain_points": goal(round(100 * g[f"{p}_balanced_accuracy_gain"], 2),
                                                      f">= {100 * body.get('goal_points', 0.10):g}")
                for p in ("linear", "knn")}
    if name in ("anomaly", "anomaly_quick"):
        return {f"feedback_ratio_at_100[{row['case']}]": goal(row.get("app ratio"), ">= 2")
                for row in body.get("summary") or []}
    if name.startswith("active_learning") and "headline" in body:
        # the app's default strategy (entropy) with each head the old run measured it with
        return {f"labels_saved_fraction[{r['dataset']}, {r['strategy']}/{r['head']}]":
                goal(r["fraction_saved"] or 0.0, ">= 0.5")
                for r in body["headline"] if r["strategy"] == "entropy"}
    return {}


def last_commit(path) -> str | None:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--", str(path.relative_to(ROOT))],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def backfill(path, today: str) -> dict | None:
    body = json.loads(path.read_text())
    if "git" in body:
        return None
    name = path.stem
    machine = body.get("machine") or {}
    packages = {k: machine[k] for k in ("torch", "numpy") if machine.get(k)} or None
    wall = body.get("total_seconds", body.get("seconds"))
    added = {
        "command": body.get("command") or COMMANDS.get(name),
        "argv": None,
        "git": {"commit": last_commit(path), "dirty": None},
        "packages": packages,
        "wall_seconds": round(float(wall), 1) if isinstance(wall, (int, float)) else None,
        "provenance": f"backfilled {today}: written before provenance was recorded; commit is the one that "
                      "committed this file; argv, dirty flag and unrecorded package versions are unknown (null); "
                      "wall_seconds is the script's own recorded duration, if it kept one",
    }
    if "goals" not in body:
        goals = derive(name, body) or legacy_goals(name, body)
        if goals:
            added["goals"] = goals
    # provenance first, then the original body, as write_result orders new files
    head = {k: body[k] for k in ("name", "time", "machine") if k in body}
    new = {**head, **added, **{k: v for k, v in body.items() if k not in head and k not in added}}
    return new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    today = time.strftime("%Y-%m-%d")
    for path in sorted(RESULTS_DIR.glob("*.json")):
        new = backfill(path, today)
        if new is None:
            print(f"{path.name}: has provenance, left alone")
            continue
        print(f"{path.name}: command {new['command']!r}, commit {new['git']['commit'][:10]}, "
              f"goals {json.dumps(new.get('goals', {}))[:300]}")
        if not args.dry_run:
            path.write_text(json.dumps(new, indent=2) + "\n")


if __name__ == "__main__":
    main()
