"""`make reliability`: load, faults and hostile input against the real stack, in one report.

Runs, against PostgreSQL and Redis on 127.0.0.1 (the same services CI uses):
  1. `manage.py check --deploy` with production settings;
  2. the fault-injection tests (tests/faults: workers SIGKILLed mid-job, Redis and
     PostgreSQL restarted, a full disk during ingest) and the hostile-input tests
     (tests/hostile: fuzzed parsers, schemathesis on the OpenAPI schema, the
     authorisation matrix) with the large hypothesis profile;
  3. benchmarks/load.py: 50 users for 60 s (each with a browser's private cache), then counts
     the stored labels.
Writes benchmarks/results/reliability.json and prints a summary.  Exit status 0
only if every test passed, the load test had no errors and no label was lost.

    python benchmarks/reliability.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import RESULTS_DIR, ROOT, print_table, write_result

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/latentsky"
DEFAULT_BROKER = "redis://127.0.0.1:6379/5"


def run(cmd: list[str], env: dict, label: str, timeout: float) -> tuple[int, float]:
    print(f"\n==> {label}\n    {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout)
    return done.returncode, time.monotonic() - start


def check_deploy(env: dict) -> dict:
    prod = {**env, "LATENTSKY_ENV": "production", "SECRET_KEY": "reliability-check-" + "k" * 50,
            "ALLOWED_HOSTS": "sky.example.org", "LATENTSKY_DATA_DIR": str(ROOT / "var" / "deploy-check")}
    prod.pop("DEBUG", None)
    prod.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=prod, capture_output=True, text=True, timeout=300)
    print(done.stdout + done.stderr)
    return {"ok": done.returncode == 0, "output": (done.stdout + done.stderr).strip()[-2000:]}


def junit_cases(path: Path) -> list[dict]:
    if not path.exists():
        return []
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped"}[tag]
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": round(float(case.get("time", 0)), 1)})
    return cases


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="default hypothesis profile and the quick load test")
    args = p.parse_args()
    env = {**os.environ, "LATENTSKY_ENV": "test", "LATENTSKY_DATA_DIR": str(ROOT / "var" / "reliability"),
           "DATABASE_URL": os.environ.get("DATABASE_URL", DEFAULT_DB),
           "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER),
           "HYPOTHESIS_PROFILE": "default" if args.quick else "reliability"}
    fuzz_report = ROOT / "var" / "reliability-fuzz.json"
    junit = ROOT / "var" / "reliability-junit.xml"
    env["LATENTSKY_FUZZ_REPORT"] = str(fuzz_report)
    for stale in (fuzz_report, junit):
        stale.unlink(missing_ok=True)
    started = time.monotonic()

    deploy = check_deploy(env)
    tests_rc, tests_s = run([sys.executable, "-m", "pytest", "tests/faults", "tests/hostile", "-p", "no:cacheprovider",
                             "-q", f"--junitxml={junit}", "-o", "addopts=-ra --strict-markers"],
                            env, "fault injection and hostile input", timeout=3600)
    cases = junit_cases(junit)
    load_args = [sys.executable, "benchmarks/load.py"] + (["--quick"] if args.quick else [])
    load_rc, load_s = run(load_args, env, "load: 50 users" if not args.quick else "load (quick)", timeout=1800)
    load = json.loads((RESULTS_DIR / ("load_quick.json" if args.quick else "load.json")).read_text())
    fuzz = json.loads(fuzz_report.read_text()) if fuzz_report.exists() else {}

    faults = [c for c in cases if ".faults." in c["test"] or "tests/faults" in c["test"]]
    failed = [c for c in cases if c["outcome"] == "failed"]
    summary = {
        "check_deploy_ok": deploy["ok"],
        "tests": {"passed": sum(c["outcome"] == "passed" for c in cases), "failed": len(failed),
                  "skipped": sum(c["outcome"] == "skipped" for c in cases), "seconds": round(tests_s, 1)},
        "faults_survived": [c["test"].rsplit("::", 1)[-1] for c in faults if c["outcome"] == "passed"],
        "faults_failed": [c["test"] for c in faults if c["outcome"] == "failed"],
        "inputs_fuzzed": fuzz, "inputs_fuzzed_total": sum(fuzz.values()),
        "load": {k: load[k] for k in ("requests", "requests_per_s", "errors", "labels_posted_ok",
                                      "labels_stored", "labels_lost", "goals_met", "cache")},
        "load_goals": load.get("goals", {}), "load_cpu": load.get("cpu"),
        "load_rows": load["rows"],
        "labels_lost": load["labels_lost"],
        "seconds": round(time.monotonic() - started, 1),
        "stack": {"database": env["DATABASE_URL"].split("@")[-1], "broker": env["CELERY_BROKER_URL"]},
    }
    ok = deploy["ok"] and tests_rc == 0 and load["errors"] == 0 and load["labels_lost"] == 0
    summary["ok"] = ok
    path = write_result("reliability" + ("_quick" if args.quick else ""), {**summary, "cases": cases,
                                                                           "check_deploy": deploy})
    print("\n==== Reliability summary")
    print_table([{"check": "manage.py check --deploy", "result": "clean" if deploy["ok"] else "ISSUES"},
                 {"check": "tests (faults + hostile)", "result": f"{summary['tests']['passed']} passed, "
                                                                  f"{len(failed)} failed"},
                 {"check": "faults survived", "result": ", ".join(summary["faults_survived"]) or "-"},
                 {"check": "inputs fuzzed", "result": f"{summary['inputs_fuzzed_total']} {fuzz}"},
                 {"check": "load requests", "result": f"{load['requests']} ({load['requests_per_s']}/s), "
                                                      f"errors {load['errors']}"},
                 {"check": "labels lost", "result": f"{load['labels_lost']} of {load['labels_posted_ok']}"}],
                ["check", "result"])
    for c in failed:
        print(f"FAILED {c['test']}")
    print(f"wrote {path}; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
