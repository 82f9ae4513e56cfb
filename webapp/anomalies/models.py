"""Anomaly scores, people's reviews and personalised rankings."""
from django.conf import settings
from django.db import models

from webapp.embeddings.models import ArtifactStatus


class ScoreSet(models.Model):
    """One run of the unsupervised scorers over an EmbeddingSet.

    Per-galaxy values live only in columnar files (services/files.py), addressed by the
    EmbeddingSet's row, with precomputed orders for sorted lists; the row becomes
    ``ready`` only after every file is complete.  Older sets beyond settings.KEEP_ROUNDS
    per embedding set are deleted (services/retention.py).
    """

    embedding_set = models.ForeignKey("embeddings.EmbeddingSet", on_delete=models.CASCADE, related_name="score_sets")
    name = models.CharField(max_length=200, blank=True)
    config = models.JSONField(default=dict, help_text="AnomalyConfig: methods and their parameters")
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    scores_path = models.CharField(max_length=500, blank=True, help_text="directory of columnar score files "
                                   "(per-method scores, ranks, combined, orders); relative to DATA_DIR")
    checksum = models.CharField(max_length=64, blank=True)
    n = models.BigIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True, help_text="wall time of the scorers")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name or f"Score set {self.pk}"

    @property
    def methods(self) -> list[str]:
        return list(self.config.get("methods", []))


class Review(models.Model):
    """One person's verdict on one candidate. Append-only: the latest row per (user, galaxy) counts.

    ``interest`` is 0–5 as in Astronomaly; ``is_artifact`` tags artifacts; an ``undo``
    row retracts that user's previous verdict on the galaxy.
    """

    class Kind(models.TextChoices):
        SCORE = "score"
        ARTIFACT = "artifact"
        UNDO = "undo"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews")
    galaxy = models.ForeignKey("catalog.Galaxy", on_delete=models.CASCADE, related_name="reviews")
    score_set = models.ForeignKey(ScoreSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SCORE)
    interest = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "galaxy", "-created_at"]),
                   models.Index(fields=["score_set", "user", "created_at"], name="review_set_user_time")]


class PersonalRanking(models.Model):
    """A user's re-ranked queue, fitted on their reviews; order lives in a file."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rankings")
    score_set = models.ForeignKey(ScoreSet, on_delete=models.CASCADE, related_name="rankings")
    ranking_path = models.CharField(max_length=500, blank=True, help_text=".npz, relative to DATA_DIR")
    n_reviews = models.BigIntegerField(default=0, help_text="verdicts (scores and artifact tags) it was fitted on")
    config = models.JSONField(default=dict, help_text="FeedbackConfig")
    seconds = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "score_set", "-created_at"], name="ranking_user_set_time")]
