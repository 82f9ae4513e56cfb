"""Labeling tasks, append-only labels, the labeling queue, model rounds and predictions.

Arrays (trained heads, per-galaxy probabilities and uncertainties) live in columnar
files under DATA_DIR/labeling/ addressed by embedding-set row; rows keep their paths and
there is no per-galaxy result row.  A Round becomes ``ready`` only after its files were
written, so a failed retrain leaves the previous round serving.
"""
from django.conf import settings
from django.db import models

from webapp.embeddings.models import ArtifactStatus


class Task(models.Model):
    class Kind(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CLASSIFICATION)
    # Classification: [{"name": "elliptical", "key": "1"}, ...]; keys are optional.
    classes = models.JSONField(default=list, blank=True)
    allow_unsure = models.BooleanField(default=True)
    # Regression: the numeric target, its unit and valid range.
    target_name = models.CharField(max_length=60, blank=True)
    unit = models.CharField(max_length=30, blank=True)
    value_min = models.FloatField(null=True, blank=True)
    value_max = models.FloatField(null=True, blank=True)
    surveys = models.ManyToManyField("catalog.Survey", related_name="tasks")
    embedding_set = models.ForeignKey("embeddings.EmbeddingSet", on_delete=models.PROTECT, related_name="tasks")
    # Across surveys: the base model learns from source_survey (survey A); the other
    # attached surveys get its predictions at once and an adapted head once they have labels.
    source_survey = models.ForeignKey("catalog.Survey", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="survey A the base model trains on "
                                      "(blank = the attached survey with most labels)")
    queue_survey = models.ForeignKey("catalog.Survey", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="pick galaxies to label from this survey "
                                     "only (blank = all attached surveys)")
    strategy = models.CharField(max_length=32, default="margin", help_text="query strategy (ml.active)")
    batch_size = models.PositiveIntegerField(default=20)
    round_every = models.PositiveIntegerField(default=20, help_text="retrain after this many new labels (0 = manual)")
    cold_start_labels = models.PositiveIntegerField(
        default=20, help_text="below this many labelled galaxies, pick diverse k-means seeds instead")
    votes_per_galaxy = models.PositiveSmallIntegerField(
        default=1, help_text="people who label each queued galaxy (>1 gives Galaxy Zoo style vote fractions)")
    head_config = models.JSONField(default=dict, blank=True)
    # Compare-and-swap counter for automatic rounds: the label count at the last trigger.
    labels_at_last_trigger = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_classification(self) -> bool:
        return self.kind == self.Kind.CLASSIFICATION

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes or []]


class Label(models.Model):
    """Append-only.  The latest row per (task, galaxy, user) that is not undone counts;
    an UNDO row points at the row it retracts (``undoes``), so undoing twice walks back
    two actions and nothing is ever updated or deleted."""

    class Kind(models.TextChoices):
        VALUE = "value"
        UNSURE = "unsure"
        SKIP = "skip"
        UNDO = "undo"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="labels")
    galaxy = models.ForeignKey("catalog.Galaxy", on_delete=models.CASCADE, related_name="labels")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.VALUE)
    class_index = models.SmallIntegerField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Where an imported label came from ("GZ2 expert"); blank for labels people gave in the app.
    # Imported labels belong to that source's system user (services/label_import.py).
    source = models.CharField(max_length=80, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["task", "galaxy", "user", "-created_at"]),
                   models.Index(fields=["task", "user", "-id"], name="label_task_user_recent")]


class QueueItem(models.Model):
    """A galaxy waiting to be labelled in a task, with the reason it was picked.

    Lower rank comes first.  Manual picks (the map's lasso) go in front of everything
    (negative ranks); a strategy's batch follows.  An item is done once
    ``task.votes_per_galaxy`` people labelled the galaxy; a person never sees a galaxy
    they already labelled, skipped or called unsure."""

    class Source(models.TextChoices):
        MANUAL = "manual"
        STRATEGY = "strategy"
        COLD_START = "cold_start"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="queue")
    galaxy = models.ForeignKey("catalog.Galaxy", on_delete=models.CASCADE, related_name="+")
    rank = models.FloatField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.STRATEGY)
    strategy = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    round_number = models.PositiveIntegerField(null=True, blank=True, help_text="model round that picked it")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    done = models.BooleanField(default=False, help_text="enough people labelled it")
    # While one person has a galaxy on screen (or prefetched), others get different ones.
    leased_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rank", "id"]
        constraints = [models.UniqueConstraint(fields=["task", "galaxy"], name="one_queue_item_per_galaxy")]
        indexes = [models.Index(fields=["task", "done", "rank"], name="queue_task_done_rank")]


class Round(models.Model):
    """One retrain of the task's model: which labels, which model, how good on validation."""

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        AUTO = "auto"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.MANUAL)
    model_version = models.CharField(max_length=80, blank=True, help_text="task.round-head-checksum")
    model_path = models.CharField(max_length=500, blank=True)
    predictions_path = models.CharField(max_length=500, blank=True, help_text="directory of columnar prediction "
                                        "files (store.PredictionWriter); blank once pruned")
    labels_path = models.CharField(max_length=500, blank=True, help_text="the training/validation labels used")
    head_config = models.JSONField(default=dict)
    strategy = models.CharField(max_length=32, blank=True)
    n_labels = models.BigIntegerField(default=0)
    n_train = models.BigIntegerField(default=0)
    n_val = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    # Across surveys: {"B-slug": {"before": {...}, "after": {...}, "n_target_labels": n}}
    transfer = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task", "-number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="unique_round_number")]

    def __str__(self):
        return f"{self.task} round {self.number}"
