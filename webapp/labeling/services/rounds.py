"""Labeling rounds: start them (on demand or every N labels), run them on a cpu worker.

A round gathers the consensus labels, fits the task's head on the frozen embeddings
(services.training), adapts it to other surveys, predicts every task galaxy with its
uncertainty in blocks of PREDICT_BLOCK rows straight into columnar files
(store.PredictionWriter: memory-mapped .npy addressed by embedding-set row; no
per-galaxy rows), then marks the round ready by pointing at them.  Any failure marks
the round failed with the error and leaves the previous round's model and predictions
serving.  Afterwards the queue gets fresh picks from the new model, and rounds older
than the last settings.KEEP_ROUNDS lose their files (prune_rounds).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from threadpoolctl import threadpool_limits

from ml.adapt import AdaptConfig
from ml.memmaps import release
from webapp.embeddings.models import ArtifactStatus
from webapp.jobs.models import Job
from webapp.labeling.models import Label, Round, Task
from webapp.labeling.services import store, training
from webapp.labeling.services.consensus import build_consensus

log = logging.getLogger(__name__)
PREDICT_BLOCK = 65_536        # task galaxies predicted per step: bounded memory (block x D, x K, x M x K)
FIT_THREADS = 1               # BLAS threads while fitting: these heads are small, and on a busy
                              #   worker 2 contending threads made logistic fits 6x slower (measured)


class RoundError(ValueError):
    """A round cannot start (no labels, one already running); the message says why."""


# ------------------------------------------------------------------ starting
def active_round(task: Task) -> Round | None:
    """A round still building whose job has not finished (queued or running)."""
    for rnd in task.rounds.filter(status=ArtifactStatus.BUILDING).select_related("job"):
        if rnd.job is None or not rnd.job.is_finished:
            return rnd
    return None


def start_round(task: Task, user=None, trigger: str = Round.Trigger.MANUAL) -> Round:
    """Create the next Round and queue its job (sent when the transaction commits)."""
    from webapp.jobs.services import create_job

    if not Label.objects.filter(task=task, kind=Label.Kind.VALUE).exists():
        raise RoundError("no labels yet: label a few galaxies before training a model")
    for _ in range(3):   # two clicks at once: the unique (task, number) lets one win, retry the other
        try:
            with transaction.atomic():
                Task.objects.select_for_update().filter(pk=task.pk).first()   # one start at a time (PostgreSQL)
                busy = active_round(task)
                if busy is not None:
                    raise RoundError(f"round {busy.number} is still training (job {busy.job_id}); "
                                     "wait for it to finish")
                number = (task.rounds.aggregate(m=Max("number"))["m"] or 0) + 1
                rnd = Round.objects.create(task=task, number=number, trigger=trigger, strategy=task.strategy,
                                           head_config=asdict(training.head_config(task.head_config)))
                job = create_job("label_round", {"task_id": task.pk, "round_id": rnd.pk}, user=user,
                                 title=f"Labeling round {number}: {task.name}")
                Round.objects.filter(pk=rnd.pk).update(job=job)
                rnd.job = job
                if trigger == Round.Trigger.MANUAL:
                    record_trigger(task)
                return rnd
        except IntegrityError:
            continue
    raise RoundError("another round was started at the same moment; try again")


def labels_since_last_round(task: Task) -> tuple[int, int]:
    """(value labels now, value labels when the last automatic/manual round was triggered)."""
    total = Label.objects.filter(task=task, kind=Label.Kind.VALUE).count()
    return total, task.labels_at_last_trigger


def auto_round_wait(task: Task) -> float:
    """Seconds until an automatic round may start (settings.AUTO_ROUND_MIN_SECONDS after the last
    round started); 0 when it may start now."""
    started = task.rounds.order_by("-number").values_list("created_at", flat=True).first()
    if started is None:
        return 0.0
    return max(0.0, settings.AUTO_ROUND_MIN_SECONDS - (timezone.now() - started).total_seconds())


def maybe_start_auto_round(task: Task) -> Round | None:
    """Start a round once round_every new labels arrived and the last round started at least
    AUTO_ROUND_MIN_SECONDS ago (compare-and-swap: one trigger wins).  A label that comes too soon
    leaves the counter as it is, so the first label after the wait starts the round."""
    if not task.round_every:
        return None
    total, last = labels_since_last_round(Task.objects.get(pk=task.pk))
    if total - last < task.round_every or active_round(task) is not None or auto_round_wait(task) > 0:
        return None
    if not Task.objects.filter(pk=task.pk, labels_at_last_trigger=last).update(labels_at_last_trigger=total):
        return None   # another labeller's request triggered it
    try:
        return start_round(task, trigger=Round.Trigger.AUTO)
    except RoundError as exc:
        log.info("task %s: automatic round not started: %s", task.pk, exc)
        return None


def record_trigger(task: Task) -> None:
    """A manual round also resets the 'labels until the next round' counter."""
    total, _ = labels_since_last_round(task)
    Task.objects.filter(pk=task.pk).update(labels_at_last_trigger=total)


# ------------------------------------------------------------------ the job
def run_round_job(job: Job, progress) -> dict:
    """Job handler (cpu queue): params {"task_id", "round_id"}."""
    rnd = Round.objects.select_related("task", "task__embedding_set").filter(pk=job.params.get("round_id")).first()
    if rnd is None:
        log.warning("round %s is gone; nothing to do", job.params.get("round_id"))
        return {"skipped": "round deleted"}
    if rnd.status == ArtifactStatus.READY:
        return {"round": rnd.number, "skipped": "already ready"}
    try:
        return train_round(rnd, progress)
    except Exception as exc:
        from webapp.jobs.services import JobCancelled
        message = "cancelled" if isinstance(exc, JobCancelled) else f"{type(exc).__name__}: {exc}"
        Round.objects.filter(pk=rnd.pk).update(status=ArtifactStatus.FAILED, error=message[:5000],
                                               finished_at=timezone.now())
        raise


def train_round(rnd: Round, progress) -> dict:
    t0 = time.perf_counter()
    task = rnd.task
    progress(0, 100, "gathering labels")
    rows = store.task_rows(task)
    cons = build_consensus(task)
    keep = np.isin(cons.galaxy_ids, rows.galaxy_ids)
    if not keep.any():
        raise RoundError("none of the labelled galaxies is in the task's embedding set")
    lab_gids, y = cons.galaxy_ids[keep], cons.label[keep]
    lab_pos = rows.positions(lab_gids)
    x_all = rows.vectors()                                               # (N, D)
    cfg = training.head_config(task.head_config)
    progress(10, 100, f"training on {len(y)} labelled galaxies")
    with threadpool_limits(limits=FIT_THREADS):
        fitted = _fit(task, rows, x_all, lab_pos, y, cfg, progress)
    progress(75, 100, "writing model and predictions")
    directory, relative = store.new_round_dir(task, rnd.number)
    checksum = store.save_head(directory / "model.npz", fitted["heads"]["base"].state_dict())
    for key, head in fitted["heads"].items():
        if key != "base":
            store.save_head(directory / f"model-{key}.npz", head.state_dict())
    store.save_npz_atomic(directory / "labels.npz", galaxy_ids=lab_gids, label=y, n_votes=cons.n_votes[keep])
    progress(80, 100, f"predicting {len(rows)} galaxies")
    predict_round(task, rows, fitted, directory / "predictions", progress)
    version = f"{task.pk}.{rnd.number}-{cfg.kind}-{checksum[:8]}"
    _publish(rnd, fitted, relative, version, len(y), time.perf_counter() - t0)
    progress(95, 100, "picking the next galaxies to label")
    from webapp.labeling.services import prerender
    from webapp.labeling.services.queue import refill, refill_size
    size = refill_size(task)      # for everyone labelling now (counted before the stale picks and their leases go)
    try:
        refill(task, size, replace_pending=True, round_number=rnd.number)
    except Exception:   # the model is served already; a failed refill retries on the next page load
        log.exception("task %s: refill after round %s failed", task.pk, rnd.number)
    try:   # the new picks' images, so that the labeling page does not render them in a request
        prerender.prerender_queue(task, limit=max(prerender.PRERENDER_ITEMS, size))
    except Exception:
        log.exception("task %s: pre-rendering after round %s failed; images render on first request",
                      task.pk, rnd.number)
    prune_rounds(task)
    progress(100, 100, "done")
    metric = fitted["metrics"].get("accuracy", fitted["metrics"].get("rmse"))
    return {"task_id": task.pk, "round": rnd.number, "model_version": version, "n_labels": int(len(y)),
            "metric": metric, "seconds": round(time.perf_counter() - t0, 2)}


def _fit(task: Task, rows, x_all, lab_pos, y, cfg, progress) -> dict:
    """Heads, predictions for all rows, metrics and transfer results."""
    if not task.is_classification:
        head, metrics, n_train, n_val = training.fit_regression(x_all, lab_pos, y.astype(np.float64),
                                                                rows.galaxy_ids, cfg)
        return {"heads": {"base": head}, "head_of_survey": {},
                "metrics": metrics, "transfer": {}, "n_train": n_train, "n_val": n_val}
    k = len(task.classes)
    lab_surveys = rows.survey_ids[lab_pos]
    source = _source_survey(task, lab_surveys)
    targets = [s for s in np.unique(rows.survey_ids) if s != source
               and (lab_surveys == s).sum() >= training.ADAPT_MIN and (lab_surveys == source).sum() >= 2]
    src = lab_surveys == source if targets else np.ones(len(y), dtype=bool)
    base, metrics, n_train, n_val = training.fit_classification(x_all, lab_pos[src], y[src], rows.galaxy_ids,
                                                                k, cfg, progress)
    heads, head_of_survey = {"base": base}, {}
    transfer = {}
    slugs = dict(task.surveys.values_list("pk", "slug"))
    for i, s in enumerate(targets):
        progress(40 + 30 * i / len(targets), 100, f"adapting to {slugs.get(int(s), s)}")
        tgt = lab_surveys == s
        head, result = training.adapt_classification(
            base, x_all, lab_pos[src], y[src], lab_pos[tgt], y[tgt], np.flatnonzero(rows.survey_ids == s), k,
            AdaptConfig())
        key = slugs.get(int(s), str(s))
        heads[key], transfer[key] = head, {**result, "source": slugs.get(int(source), str(source))}
        head_of_survey[int(s)] = key                                     # survey B's galaxies use it
    if targets:
        metrics["source_survey"] = slugs.get(int(source), str(source))
    metrics["per_survey_labels"] = {slugs.get(int(s), str(s)): int((lab_surveys == s).sum())
                                    for s in np.unique(lab_surveys)}
    return {"heads": heads, "head_of_survey": head_of_survey, "metrics": metrics, "transfer": transfer,
            "n_train": n_train, "n_val": n_val}


def _source_survey(task: Task, lab_surveys: np.ndarray) -> int:
    """Survey A: the task's source survey when it has labels, else the most labelled one."""
    if task.source_survey_id and (lab_surveys == task.source_survey_id).any():
        return int(task.source_survey_id)
    values, counts = np.unique(lab_surveys, return_counts=True)
    return int(values[np.argmax(counts)])


def predict_round(task: Task, rows, fitted: dict, directory: Path, progress=None) -> None:
    """Predict every task galaxy in blocks of PREDICT_BLOCK rows into columnar files.

    Memory is bounded by the block: (B, D) vectors, (B, K) probabilities and (M, B, K)
    ensemble members at a time, never N×K per member.  Survey B's galaxies use their
    adapted head (fitted["head_of_survey"]), everything else the base head."""
    from webapp.embeddings.services.vectors import load_embedding_set

    _, vectors, _ = load_embedding_set(rows.es)
    heads, head_of_survey = fitted["heads"], fitted["head_of_survey"]
    n = len(rows)
    with store.PredictionWriter(directory, rows.es) as writer:
        for start in range(0, n, PREDICT_BLOCK):
            block_rows = rows.rows[start:start + PREDICT_BLOCK]                 # (B,) set rows, ascending
            x = np.asarray(vectors[block_rows], dtype=np.float32)              # (B, D)
            if len(block_rows):
                release(vectors, int(block_rows[0]), int(block_rows[-1]) + 1)  # streamed, not kept resident
            surveys = rows.survey_ids[start:start + PREDICT_BLOCK]
            groups = [("base", ~np.isin(surveys, list(head_of_survey)))]
            groups += [(key, surveys == s) for s, key in head_of_survey.items()]
            for key, mask in groups:
                if not mask.any():
                    continue
                head = heads[key]
                if task.is_classification:
                    out = training.predict_classification(head, x[mask])
                    if "members" in out:
                        out["members"] = out["members"].transpose(1, 0, 2)     # (B_k, M, K): row-addressable
                else:
                    out = training.predict_regression(head, x[mask])
                for name, values in out.items():
                    writer.put(name, block_rows[mask], values)
            if progress is not None:
                progress(80 + 10 * min(start + PREDICT_BLOCK, n) / max(n, 1), 100,
                         f"predicted {min(start + PREDICT_BLOCK, n)} of {n} galaxies")


def _publish(rnd: Round, fitted: dict, relative: str, version: str, n_labels: int, seconds: float):
    """Point the round at its files and mark it ready (one UPDATE: the previous round serves until then)."""
    with transaction.atomic():
        if Round.objects.filter(pk=rnd.pk, status=ArtifactStatus.BUILDING).update(
                status=ArtifactStatus.READY, model_path=f"{relative}/model.npz",
                predictions_path=f"{relative}/predictions", labels_path=f"{relative}/labels.npz",
                model_version=version, n_labels=n_labels, n_train=fitted["n_train"], n_val=fitted["n_val"],
                metrics=_jsonable(fitted["metrics"]), transfer=_jsonable(fitted["transfer"]),
                seconds=round(seconds, 3), finished_at=timezone.now(), error="") != 1:
            raise RoundError(f"round {rnd.number} is no longer building (cancelled or failed meanwhile)")


def prune_rounds(task: Task, keep: int | None = None) -> list[int]:
    """Delete the files of ready rounds older than the newest ``keep`` (settings.KEEP_ROUNDS).

    The serving round (newest ready) is always kept.  Round rows stay, with their metrics
    (the task page's learning curve), but lose their file paths.  Returns the pruned
    round numbers."""
    keep = max(int(keep if keep is not None else settings.KEEP_ROUNDS), 1)
    ready = list(task.rounds.filter(status=ArtifactStatus.READY).exclude(predictions_path="")
                 .order_by("-number").values_list("pk", "number", "predictions_path"))
    pruned = []
    root = Path(settings.DATA_DIR)
    for pk, number, path in ready[keep:]:
        if Round.objects.filter(pk=pk, predictions_path=path).update(predictions_path="", model_path="",
                                                                      labels_path="") != 1:
            continue
        directory = (root / path).parent
        if directory.is_dir() and directory.name.startswith(f"round{number}-"):
            shutil.rmtree(directory, ignore_errors=True)
        pruned.append(number)
    if pruned:
        log.info("task %s: pruned the files of rounds %s (keeping %d)", task.pk, pruned, keep)
    return pruned


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
