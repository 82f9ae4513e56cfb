"""The demo pipeline as a tree of ordinary jobs, and a terminal view of their progress.

Each step is a normal Job (visible on the Jobs page, cancellable, retried after a
worker loss); a step's follow-ups are created when it succeeds (services._start_followups).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from django.conf import settings

from webapp.cli import render_bar
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

GZ1_DIR = Path(settings.BASE_DIR).parent / "shared" / "data" / "gz1_sdss"


SIM_SLUGS = ("sim-sdss", "sim-des")
REAL_NAME = "SDSS GZ1 (real)"
REAL_SLUG = "sdss-gz1-real"
DEMO_ENCODER = "demo-small"
REAL_ENCODER = "demo-sdss-real"


def after_embed_steps(with_demo_task: bool, after_scores: list[dict] | None = None) -> list[dict]:
    """What every fresh embedding set gets: a map, a search index, anomaly scores (+ the demo task).
    ``after_scores`` start once the scores are done, i.e. after the quick steps of this set."""
    ref = {"embedding_set_id": "$parent.embedding_set_id"}
    scores = {"kind": "anomaly_scores", "title": "Anomaly scores", "params": dict(ref)}
    if after_scores:
        scores["then"] = list(after_scores)
    steps = [{"kind": "umap", "title": "UMAP map", "params": dict(ref)},
             {"kind": "build_index", "title": "Search index", "params": dict(ref)},
             scores]
    if with_demo_task:
        steps.append({"kind": "demo_task", "title": "Demo labeling task", "params": dict(ref)})
    return steps


def train_and_embed(encoder_name: str, train_slugs, embed_slugs, epochs: int, seed: int, title: str,
                    with_demo_task: bool = False, then_after: list[dict] | None = None) -> dict:
    embed = {"kind": "embed", "title": f"Embed {', '.join(embed_slugs)}",
             "params": {"encoder_id": "$parent.encoder_id", "surveys": list(embed_slugs)},
             "then": after_embed_steps(with_demo_task, then_after)}
    return {"kind": "train_encoder", "title": title,
            "params": {"surveys": list(train_slugs), "preset": "small", "method": "simclr", "epochs": epochs,
                       "name": encoder_name, "seed": seed},
            "then": [embed]}


def real_chain(epochs: int, seed: int) -> dict:
    return train_and_embed(REAL_ENCODER, [REAL_SLUG], [REAL_SLUG], epochs, seed,
                           "Train encoder on real SDSS (SimCLR, small)")


def real_data_present() -> bool:
    return (GZ1_DIR / "smallCSV_class.csv").exists()


def demo_steps(n: int = 5000, seed: int = 0, epochs: int = 12, include_real: bool = True) -> list[dict]:
    """Root job specs for an empty workspace:
    simulate → train → embed both simulated surveys → map, index, scores, demo task → real-SDSS chain;
    and, in parallel, the real SDSS ingest (seconds).  The real-SDSS encoder starts after the
    simulated embedding so that the first map is not slowed down."""
    real = include_real and real_data_present()
    sim = {"kind": "simulate_surveys", "title": f"Simulate {n} galaxies in SDSS-like and DES-like surveys",
           "params": {"n": n, "seed": seed},
           "then": [train_and_embed(DEMO_ENCODER, ["sim-sdss"], SIM_SLUGS, epochs, seed,
                                    "Train demo encoder (SimCLR, small)", with_demo_task=True,
                                    then_after=[real_chain(epochs, seed)] if real else None)]}
    steps = [sim]
    if real:
        steps.append(ingest_real_step())
    return steps


def ingest_real_step() -> dict:
    return {"kind": "ingest", "title": "Ingest real SDSS cutouts (Galaxy Zoo 1)",
            "params": {"format": "folder", "path": str(GZ1_DIR), "preset": "gz1_sdss", "survey": REAL_NAME}}


# ----------------------------------------------------------------- re-runs

def plan_demo(n: int = 5000, seed: int = 0, epochs: int = 12, include_real: bool = True) -> tuple[list[dict], list[str]]:
    """The steps still missing in this workspace, and a note per step that is already done.

    `make demo` can be run again safely: finished work is kept and unfinished jobs from an
    interrupted run are resumed by the reaper, so only what is absent is queued."""
    from webapp.catalog.models import Survey

    notes: list[str] = []
    if Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).exists():
        notes.append("unfinished jobs from an earlier run will be resumed by the worker")
    ready = {s.slug: s for s in Survey.objects.filter(status=Survey.Status.READY)}
    sim_ready = all(slug in ready and ready[slug].n_galaxies == n for slug in SIM_SLUGS)
    steps: list[dict] = []
    real = include_real and real_data_present()
    sim_set = _ready_set(DEMO_ENCODER, SIM_SLUGS)
    real_set = _ready_set(REAL_ENCODER, [REAL_SLUG]) if real else None
    if not sim_ready:
        return demo_steps(n, seed, epochs, include_real) if not _busy("simulate_surveys") else [], notes
    notes.append(f"already built: simulated surveys ({n} galaxies each)")
    if sim_set is None:
        if not _busy("train_encoder", "embed"):
            steps.append(train_and_embed(DEMO_ENCODER, ["sim-sdss"], SIM_SLUGS, epochs, seed,
                                         "Train demo encoder (SimCLR, small)", with_demo_task=True))
    else:
        notes.append(f"already built: demo embedding set #{sim_set.pk}")
        steps += _missing_after_embed(sim_set, with_demo_task=True, notes=notes)
    if real:
        if REAL_SLUG not in ready and not _busy("ingest"):
            steps.append(ingest_real_step())
        if real_set is None and not _busy("train_encoder", "embed"):
            steps.append(real_chain(epochs, seed))
        elif real_set is not None:
            steps += _missing_after_embed(real_set, with_demo_task=False, notes=notes)
    return steps, notes


def _busy(*kinds: str) -> bool:
    return Job.objects.filter(kind__in=kinds, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).exists()


def _ready_set(encoder_name: str, slugs):
    from webapp.embeddings.models import ArtifactStatus, EmbeddingSet

    for es in EmbeddingSet.objects.filter(encoder__name=encoder_name, status=ArtifactStatus.READY) \
            .prefetch_related("surveys").order_by("-created_at"):
        if set(slugs) <= {s.slug for s in es.surveys.all()}:
            return es
    return None


def _missing_after_embed(es, with_demo_task: bool, notes: list[str]) -> list[dict]:
    from webapp.anomalies.models import ScoreSet
    from webapp.embeddings.models import ArtifactStatus

    have = {
        "umap": es.maps.filter(status=ArtifactStatus.READY).exists(),
        "build_index": es.index_status == ArtifactStatus.READY,
        "anomaly_scores": ScoreSet.objects.filter(embedding_set=es, status=ArtifactStatus.READY).exists(),
        "demo_task": not with_demo_task or es.tasks.exists(),
    }
    steps = []
    for spec in after_embed_steps(with_demo_task):
        if have[spec["kind"]] or _busy(spec["kind"]):
            continue
        spec = {**spec, "params": {"embedding_set_id": es.pk}}
        steps.append(spec)
    if all(have.values()):
        notes.append(f"already built: map, index, scores{' and task' if with_demo_task else ''} of embedding set #{es.pk}")
    return steps


def run_demo_task_job(job, progress) -> dict:
    """Create (idempotently) the demo's labeling task on a fresh embedding set."""
    from webapp.embeddings.models import EmbeddingSet
    from webapp.labeling.services.demo import ensure_demo_task

    es = EmbeddingSet.objects.filter(pk=job.params.get("embedding_set_id")).first()
    if es is None:
        raise ValueError(f"embedding set {job.params.get('embedding_set_id')} does not exist")
    task = ensure_demo_task(es)
    progress(1, 1, f"task {task.name!r} ready to label")
    return {"task_id": task.pk}


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
