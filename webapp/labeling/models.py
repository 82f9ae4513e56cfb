"""Labeling tasks, append-only labels, model rounds and predictions."""
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
    strategy = models.CharField(max_length=32, default="entropy", help_text="query strategy (ml.active)")
    batch_size = models.PositiveIntegerField(default=20)
    round_every = models.PositiveIntegerField(default=20, help_text="retrain after this many new labels (0 = manual)")
    head_config = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Label(models.Model):
    """Append-only: the latest row per (task, galaxy, user) counts; an undo row retracts it."""

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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["task", "galaxy", "user", "-created_at"])]


class Round(models.Model):
    """One retrain of the task's model: which labels, which model, how good on validation."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    model_path = models.CharField(max_length=500, blank=True)
    predictions_path = models.CharField(max_length=500, blank=True, help_text="per-galaxy predictions file")
    head_config = models.JSONField(default=dict)
    n_labels = models.PositiveIntegerField(default=0)
    n_train = models.PositiveIntegerField(default=0)
    n_val = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "-number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="unique_round_number")]


class Prediction(models.Model):
    """Latest-round prediction for one galaxy, kept as a row so maps, pages and exports can join it."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="predictions")
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="predictions")
    galaxy = models.ForeignKey("catalog.Galaxy", on_delete=models.CASCADE, related_name="predictions")
    class_index = models.SmallIntegerField(null=True, blank=True)
    probabilities = models.JSONField(default=list, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="regression mean")
    uncertainty = models.FloatField(help_text="entropy (classification) or sigma (regression)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "galaxy"], name="one_prediction_per_galaxy")]
