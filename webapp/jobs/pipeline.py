"""The demo pipeline as a tree of ordinary jobs, and a terminal view of their progress.

Each step is a normal Job (visible on the Jobs page, cancellable, retried after a
worker loss); a step's follow-ups are created when it succeeds (services._start_followups).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from django.conf import settings

from webapp.jobs.models import Job
from webapp.jobs.services import create_job

GZ1_DIR = Path(settings.BASE_DIR).parent / "shared" / "data" / "gz1_sdss"


def demo_steps(n: int = 5000, seed: int = 0, epochs: int = 12, include_real: bool = True) -> list[dict]:
    """Root job specs: simulate → (train → embed → map, index, scores), and real SDSS ingest."""
    after_embed = [
        {"kind": "umap", "params": {"embedding_set_id": "$parent.embedding_set_id"}},
        {"kind": "build_index", "params": {"embedding_set_id": "$parent.embedding_set_id"}},
        {"kind": "anomaly_scores", "params": {"embedding_set_id": "$parent.embedding_set_id"}},
    ]
    train = {"kind": "train_encoder", "title": "Train demo encoder (SimCLR, small)",
             "params": {"surveys": ["sim-sdss"], "preset": "small", "method": "simclr", "epochs": epochs,
                        "name": "demo-small", "seed": seed},
             "then": [{"kind": "embed", "title": "Embed both simulated surveys",
                       "params": {"encoder_id": "$parent.encoder_id", "surveys": ["sim-sdss", "sim-des"]},
                       "then": after_embed}]}
    steps = [{"kind": "simulate_surveys", "title": f"Simulate {n} galaxies in SDSS-like and DES-like surveys",
              "params": {"n": n, "seed": seed}, "then": [train]}]
    if include_real and (GZ1_DIR / "smallCSV_class.csv").exists():
        steps.append({"kind": "ingest", "title": "Ingest real SDSS cutouts (Galaxy Zoo 1)",
                      "params": {"format": "folder", "path": str(GZ1_DIR), "preset": "gz1_sdss",
                                 "survey": "SDSS GZ1 (real)"}})
    return steps


def launch(steps: list[dict], user=None) -> list[Job]:
    return [create_job(s["kind"], s.get("params"), user=user, title=s.get("title", ""), then=s.get("then"))
            for s in steps]


def descendants(root_ids: list[int]) -> list[Job]:
    jobs, frontier = [], list(root_ids)
    while frontier:
        level = list(Job.objects.filter(pk__in=frontier).order_by("id"))
        jobs.extend(level)
        frontier = list(Job.objects.filter(parent_id__in=[j.pk for j in level]).values_list("pk", flat=True))
    return sorted(jobs, key=lambda j: j.pk)


def render_bar(fraction: float, width: int = 28) -> str:
    filled = int(round(fraction * width))
    return "█" * filled + "·" * (width - filled)


def follow(root_ids: list[int], out=sys.stdout, poll: float = 1.0, timeout: float | None = None) -> bool:
    """Print a progress bar per job until the whole tree has finished. True if all succeeded."""
    start, last_lines = time.monotonic(), 0
    interactive = out.isatty()
    printed: dict[int, tuple] = {}
    while True:
        jobs = descendants(root_ids)
        lines = [f"  #{j.pk:<4} {render_bar(j.progress)} {j.progress * 100:5.1f}%  {j.status:<9} "
                 f"{(j.title or j.kind)[:38]:<38} {j.message[:50]}" for j in jobs]
        if interactive:
            if last_lines:
                out.write(f"\x1b[{last_lines}F\x1b[J")
            out.write("\n".join(lines) + "\n")
            out.flush()
        else:  # a log file: one line per job whenever its status or progress decile changes
            for j, line in zip(jobs, lines):
                state = (j.status, int(j.progress * 10))
                if printed.get(j.pk) != state:
                    printed[j.pk] = state
                    out.write(line.rstrip() + "\n")
            out.flush()
        last_lines = len(lines)
        pending_followups = any(j.status == "succeeded" and j.params.get("_then") and not j.children.exists()
                                for j in jobs)
        if jobs and all(j.is_finished for j in jobs) and not pending_followups:
            return all(j.status == "succeeded" for j in jobs)
        if timeout is not None and time.monotonic() - start > timeout:
            return False
        time.sleep(poll)
