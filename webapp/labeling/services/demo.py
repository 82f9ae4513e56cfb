"""The demo's ready-to-label morphology task (called by the demo pipeline, idempotent)."""
from __future__ import annotations

from django.db import transaction

from webapp.labeling.models import Task

DEMO_TASK_NAME = "Morphology (simulated SDSS-like)"
DEMO_CLASSES = [
    {"name": "elliptical", "key": "1"},
    {"name": "spiral", "key": "2"},
    {"name": "edge-on", "key": "3"},
    {"name": "merger", "key": "4"},
]
SOURCE_SLUG, TARGET_SLUG = "sim-sdss", "sim-des"


def ensure_demo_task(embedding_set) -> Task:
    """The morphology task on the simulated SDSS-like survey, created once.

    When the embedding set also holds the DES-like survey, it is attached too: the model
    trained on SDSS-like labels then predicts DES-like galaxies at once (survey A -> B),
    while the queue keeps asking for SDSS-like galaxies.  Calling it again returns the
    same task (re-pointed at this embedding set if the demo re-embedded the surveys and
    no labels exist yet).
    """
    surveys = {s.slug: s for s in embedding_set.surveys.all()}
    if SOURCE_SLUG not in surveys:
        raise ValueError(f"embedding set {embedding_set.pk} does not contain the {SOURCE_SLUG!r} survey "
                         f"(it has {sorted(surveys)})")
    with transaction.atomic():
        task, created = Task.objects.select_for_update().get_or_create(name=DEMO_TASK_NAME, defaults=dict(
            description="Classify the morphology of simulated SDSS-like galaxies. Keys 1-4 label, "
                        "0 = unsure, s = skip, u / Backspace = undo.",
            kind=Task.Kind.CLASSIFICATION, classes=DEMO_CLASSES, allow_unsure=True,
            embedding_set=embedding_set, source_survey=surveys[SOURCE_SLUG],
            queue_survey=surveys[SOURCE_SLUG], strategy="margin", batch_size=20, round_every=20,
            cold_start_labels=20, votes_per_galaxy=1, head_config={"kind": "mlp_ensemble"}))
        if not created and task.embedding_set_id != embedding_set.pk and not task.labels.exists():
            task.embedding_set = embedding_set
            task.save(update_fields=["embedding_set"])
        if created or task.embedding_set_id == embedding_set.pk:
            task.surveys.add(*[surveys[s] for s in (SOURCE_SLUG, TARGET_SLUG) if s in surveys])
    return task
