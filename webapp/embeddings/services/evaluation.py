"""The ``evaluate_encoder`` job (cpu queue): kNN (k = 20) and linear-probe accuracy of an encoder
on a labelled catalogue column, against PCA on pixels and a random encoder of the same shape.

Labels are public catalogue columns only, as for a real survey (the simulator's hidden
Galaxy.truth is never read by the app).  Found automatically per survey (or given as
params["label"]):
  "metadata:gz_label" simulated surveys: the simulated Galaxy Zoo-style volunteer consensus
                      (ml.sim_votes; elliptical, spiral, edge_on, merger; "uncertain" left out)
  "gz1"               Galaxy Zoo 1: Galaxy.metadata["gz1_class"] (0 elliptical, 1+2 spiral, 3 edge-on;
                      4 star/artifact and 5 merger are left out), as the ingest preset gz1_sdss stores it
  "metadata:<key>"    any categorical metadata column (strings or integers)
Params: {"encoder_id", "surveys"? (default: the training surveys), "label"?, "max_galaxies"?}.
Results go to Encoder.metrics["evaluation"][<survey slug>] (ml.evaluate.compare's report plus
the label column and timings); the encoders page shows them as a table and a bar chart.
"""
from __future__ import annotations

import time

import numpy as np
from django.utils import timezone

from ml import vocab
from ml.checkpoints import load_encoder
from ml.embed import embed_array
from ml.encoders import encoder_from_config
from ml.evaluate import EvalConfig, compare, pca_features, pixel_features, summary_rows
from ml.progress import Progress, span
from webapp.catalog.models import Survey
from webapp.catalog.services.store_cache import read_images
from webapp.embeddings.models import ArtifactStatus, Encoder
from webapp.embeddings.services.encoders import abspath, resolve_surveys
from webapp.jobs.models import Job

MAX_GALAXIES = 20_000  # evaluation sample per survey (seeded); probes and PCA stay under a minute
GZ1_TASK3 = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "edge_on"}
SIM_VOLUNTEER_COLUMN = f"metadata:{vocab.GZ_LABEL_KEY}"


def label_column(survey: Survey, requested: str = "") -> str | None:
    """Which labels to evaluate on (see the module docstring); None when the survey has none."""
    if requested:
        return requested
    sample = list(survey.galaxies.order_by("image_index").values_list("metadata", flat=True)[:50])
    if any(vocab.GZ_LABEL_KEY in (m or {}) for m in sample):
        return SIM_VOLUNTEER_COLUMN
    if any("gz1_class" in (m or {}) for m in sample):
        return "gz1"
    return None


def labels_for(survey: Survey, column: str, rows: np.ndarray) -> tuple[np.ndarray, list]:
    """(y (len(rows),) int with -1 for unlabelled, class names) for store rows ``rows``."""
    field, _, key = column.partition(":")
    if not (column == "gz1" or (field == "metadata" and key)):
        raise ValueError(f"label column {column!r} is not 'gz1' or 'metadata:<key>' (a public catalogue column)")
    galaxies = dict(survey.galaxies.filter(image_index__in=rows.tolist()).values_list("image_index", "metadata"))
    if column == "gz1":
        raw = [GZ1_TASK3.get(_int_or_none((galaxies.get(int(r)) or {}).get("gz1_class"))) for r in rows]
        classes = list(vocab.TASK3_CLASSES)
    else:
        raw = [(galaxies.get(int(r)) or {}).get(key) for r in rows]
        # An "uncertain" volunteer consensus is no class: those galaxies count as unlabelled.
        no_label = (None, "", vocab.UNCERTAIN) if column == SIM_VOLUNTEER_COLUMN else (None, "")
        raw = [None if v in no_label else str(v) for v in raw]
        known = list(vocab.CLASSES) if column == SIM_VOLUNTEER_COLUMN else []
        classes = known + sorted({v for v in raw if v is not None} - set(known))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in raw], dtype=np.int64), classes


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def evaluate_on_survey(encoder: Encoder, survey: Survey, column: str, max_galaxies: int = MAX_GALAXIES,
                       seed: int = 0, progress: Progress | None = None) -> dict:
    """Embed a (seeded) sample of the survey three ways and probe each against the labels."""
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    n = survey.n_galaxies
    rows = np.sort(rng.choice(n, size=min(n, max_galaxies), replace=False)) if n > max_galaxies else np.arange(n)
    y, classes = labels_for(survey, column, rows)
    if (y >= 0).sum() < 10:
        raise ValueError(f"survey {survey.slug} has only {(y >= 0).sum()} galaxies labelled by {column!r}")
    _say(progress, 0.1, f"{survey.slug}: reading {len(rows):,} images")
    images = read_images(survey.store_abspath, rows.tolist())
    model, preprocess, _ = load_encoder(abspath(encoder.checkpoint_path))
    _say(progress, 0.3, f"{survey.slug}: embedding with the trained and a random encoder")
    reps = {"ssl": embed_array(model, preprocess, images)}
    random_model = encoder_from_config(model.config, seed=seed + 1)
    reps["random_encoder"] = embed_array(random_model, preprocess, images)
    _say(progress, 0.5, f"{survey.slug}: PCA on pixels")
    pixels = pixel_features(images, preprocess)
    reps["pca_pixels"] = pca_features(pixels, pixels, model.feature_dim, seed)
    del pixels, images
    _say(progress, 0.7, f"{survey.slug}: kNN and linear probes")
    report = compare(reps, y, classes, EvalConfig(seed=seed))
    report.update(label=column, survey=survey.slug, n_sampled=int(len(rows)),
                  seconds=round(time.monotonic() - started, 2), rows=summary_rows(report))
    return report


def _say(progress, fraction, message):
    if progress is not None:
        progress(fraction, 1.0, message)


def run_evaluate_job(job: Job, progress: Progress) -> dict:
    params = job.params
    encoder = Encoder.objects.get(pk=params["encoder_id"])
    if encoder.status != ArtifactStatus.READY:
        raise ValueError(f"encoder {encoder.pk} is {encoder.status}; only ready encoders can be evaluated")
    slugs = params.get("surveys") or list(encoder.surveys.values_list("slug", flat=True))
    if not slugs:
        raise ValueError("no survey to evaluate on: the encoder lists none; pass params['surveys']")
    surveys = resolve_surveys(slugs)
    plan = [(s, label_column(s, params.get("label", ""))) for s in surveys]
    plan = [(s, c) for s, c in plan if c]
    if not plan:
        raise ValueError(f"none of {', '.join(slugs)} has labels to evaluate on (simulated volunteer "
                         "gz_label, Galaxy Zoo gz1_class, or params['label'] = 'metadata:<key>')")
    results = {}
    for i, (survey, column) in enumerate(plan):
        results[survey.slug] = evaluate_on_survey(encoder, survey, column, int(params.get("max_galaxies", MAX_GALAXIES)),
                                                  int(params.get("seed", 0)),
                                                  span(progress, i / len(plan), (i + 1) / len(plan)))
    encoder.refresh_from_db()
    metrics = dict(encoder.metrics or {})
    metrics["evaluation"] = {**metrics.get("evaluation", {}), **results}
    metrics["evaluated_at"] = timezone.now().isoformat()
    Encoder.objects.filter(pk=encoder.pk).update(metrics=metrics)
    headline = {slug: {r["representation"]: {"knn_bal_acc": round(r["knn_bal_acc"], 4),
                                              "linear_bal_acc": round(r["linear_bal_acc"], 4)}
                       for r in rep["rows"]} for slug, rep in results.items()}
    return {"encoder_id": encoder.pk, "surveys": list(results), "balanced_accuracy": headline}
