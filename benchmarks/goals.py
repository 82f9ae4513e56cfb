"""The goals the benchmarks judge, as one uniform block per result file:

    "goals": {"<name>": {"value": 0.0, "target": "<op> <number>", "met": false}}

common.write_result calls derive(name, body) for every result that does not set its own
"goals" (embed_quality, anomaly and active_learning set theirs: they depend on the split);
benchmarks/backfill_provenance.py uses the same functions on result files written before
the block existed. Each function reads only figures the result file records, with the goal
the issue (and the README's table) states. A goal that was not measured has value null and
met null.
"""
from __future__ import annotations

from typing import Any, Callable

from common import goal


def _rows(body, key):
    return body.get(key) or []


def grid_load(body: dict) -> dict:
    cold = body.get("cold") or {}
    return {"grid_100_thumbnails_cold_s": goal(cold.get("total_s"), f"< {body.get('target_seconds', 1.0):g}")}


def simulate(body: dict) -> dict:
    return {"simulate_both_surveys_s": goal(body.get("total_seconds"), f"< {body.get('goal_seconds', 180.0):g}")}


def search(body: dict) -> dict:
    out = {}
    for row in _rows(body, "rows"):
        if row.get("N") == 1_000_000 and not str(row.get("index", "")).startswith("flat"):
            out[f"search_p95_ms[{row['data']}, 1e6]"] = goal(row["p95_ms"], "< 5")
            recall = next((v for k, v in row.items() if k.startswith("recall@")), None)
            out[f"search_recall[{row['data']}, 1e6]"] = goal(recall, ">= 0.95")
    for row in _rows(body, "http"):
        if row.get("clients") == "sequential":
            out[f"neighbours_http_p95_ms[{row['N']}, sequential]"] = goal(row["p95_ms"],
                                                                          f"< {row.get('goal_p95_ms', 50.0):g}")
    return out


def map_(body: dict) -> dict:
    """The README judges the cold first render (navigation start -> points drawn); the script's
    docstring judges the client-side wall time (request -> points drawn). Both are given."""
    out = {}
    limit = body.get("goal_first_render_s", 3.0)
    for row in _rows(body, "page"):
        if row.get("run") == "cold":
            for key, field in (("first_render_s", "first_render_ms"), ("wall_s", "wall_ms")):
                if row.get(field) is not None:
                    out[f"map_{key}[{row['N']}, cold]"] = goal(round(row[field] / 1000, 3), f"< {limit:g}")
    return out


LOAD_P95_MS = {"label: next": 200, "label: post": 200, "neighbours": 200, "map points": 200,
               "thumbnail": 100, "atlas": 100}     # issue 16, on 2 cores


def load(body: dict) -> dict:
    """Issue 16 at the run's number of people (50 by default): the p95 of each endpoint, no errors,
    no lost labels; with --capacity also the most people that met all of them (at least 50).
    Files written before issue 16 judged labeling and neighbours against ``goal_p95_ms``."""
    old = "goal_p95_ms" in body
    limits = {k: body["goal_p95_ms"] for k in ("label: next", "label: post", "neighbours")} if old else LOAD_P95_MS
    out = {}
    for endpoint, limit in limits.items():
        p95 = next((r.get("p95_ms") for r in _rows(body, "rows") if r["endpoint"] == endpoint), None)
        out[f"p95_ms[{endpoint}]"] = goal(p95, f"< {limit:g}")
    out["labels_lost"] = goal(body.get("labels_lost"), "== 0")
    out["errors"] = goal(body.get("errors"), "== 0")
    if body.get("capacity"):
        out["capacity_users"] = goal(body["capacity"].get("users_meeting_goals"), ">= 50")
    return out


def reliability(body: dict) -> dict:
    load_ = body.get("load") or {}
    tests = body.get("tests") or {}
    return {"tests_failed": goal(tests.get("failed"), "== 0"),
            "faults_failed": goal(len(body.get("faults_failed") or []), "== 0"),
            "load_errors": goal(load_.get("errors"), "== 0"),
            "labels_lost": goal(body.get("labels_lost"), "== 0"),
            "check_deploy_issues": goal(None if body.get("check_deploy_ok") is None
                                        else int(not body["check_deploy_ok"]), "== 0")}


def throughput(body: dict) -> dict:
    gpu = [r for r in _rows(body, "rows") if r.get("device") == "cuda"]
    best = max((r.get("embed_img/s") for r in gpu), default=None)
    return {"gpu_embed_images_per_s": goal(best, f">= {body.get('gpu_embed_goal_images_per_s', 20000):g}")}


def transfer(body: dict) -> dict:
    """>= 95 % on survey B with <= 100 B labels: the app's default adapter (ml.heads.AdaptConfig():
    finetune + standardise) with 100 labels, and with no B labels at all (direct)."""
    table = _rows(body, "table")
    at100 = next((r["accuracy"] for r in table
                  if r.get("method") == "adapted: finetune+standardise" and r.get("n_target") == 100), None)
    direct = next((r["accuracy"] for r in table if r.get("method") == "direct"), None)
    return {"transfer_accuracy[100 target labels, finetune+standardise]": goal(at100, ">= 0.95"),
            "transfer_accuracy[direct, 0 labels]": goal(direct, ">= 0.95")}


def round_timing(body: dict) -> dict:
    """One labeling round at 100,000 galaxies in "seconds" (the issue's word; read as < 60 s)."""
    return {f"round_s[{r['n_galaxies']}, {r['head']}, {r['database']}]": goal(r["round_s"], "< 60")
            for r in _rows(body, "rounds") if r.get("n_galaxies") == 100_000}


def switch_time(body: dict) -> dict:
    return {"median_ms": goal(body.get("median_ms"), "< 100"), "p90_ms": goal(body.get("p90_ms"), "< 100")}


DERIVERS: dict[str, Callable[[dict], dict]] = {
    "grid_load": grid_load, "simulate": simulate, "search": search, "map": map_, "load": load,
    "reliability": reliability, "throughput": throughput, "transfer": transfer,
    "active_learning_round_timing": round_timing,
    "labeling_switch": switch_time, "anomaly_review_switch": switch_time,
}


def derive(name: str, body: dict[str, Any]) -> dict:
    """The goals block of result ``name`` (a known benchmark, or one of its _quick/_postgres/...
    variants), or {} for results that judge no goal."""
    for base in sorted(DERIVERS, key=len, reverse=True):
        if name == base or name.startswith(base + "_"):
            return DERIVERS[base](body)
    return {}
