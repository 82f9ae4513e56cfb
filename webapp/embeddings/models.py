"""Encoders, embedding sets, latent maps and collections.

Vectors, coordinates and indexes are files under DATA_DIR; rows keep their paths,
shapes and checksums.  A row becomes ``ready`` only after its file was written
completely and atomically renamed into place.
"""
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import models


class ArtifactStatus(models.TextChoices):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


@contextmanager
def failed_on_error(row, field: str = "status", errors: type[BaseException] | tuple = Exception):
    """Mark ``row`` FAILED (its ``field`` column, in the database) when the block raises one of
    ``errors``, then re-raise: a building artifact never stays "building" after its job died."""
    try:
        yield
    except errors:
        type(row)._default_manager.filter(pk=row.pk).update(**{field: ArtifactStatus.FAILED})
        raise


def data_path(relative: str) -> Path:
    return Path(settings.DATA_DIR) / relative


class Encoder(models.Model):
    """A trained (or uploaded) self-supervised encoder checkpoint."""

    class Source(models.TextChoices):
        TRAINED = "trained"
        UPLOADED = "uploaded"
        EXTERNAL = "external"   # vectors imported from a table made elsewhere (config holds provenance)

    name = models.CharField(max_length=100)
    method = models.CharField(max_length=20, help_text="simclr, byol, …")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.TRAINED)
    config = models.JSONField(default=dict, help_text="TrainConfig as saved inside the checkpoint")
    surveys = models.ManyToManyField("catalog.Survey", related_name="encoders", blank=True)
    checkpoint_path = models.CharField(max_length=500, blank=True, help_text="relative to DATA_DIR")
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    epochs_done = models.PositiveIntegerField(default=0)
    training_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="kNN / linear probe vs baselines")
    train_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.method})"


class EmbeddingSet(models.Model):
    """N×D float32 vectors for every galaxy of one or more surveys, in one shared space."""

    encoder = models.ForeignKey(Encoder, on_delete=models.CASCADE, related_name="embedding_sets")
    surveys = models.ManyToManyField("catalog.Survey", related_name="embedding_sets")
    name = models.CharField(max_length=200, blank=True)
    dim = models.PositiveIntegerField(default=0)
    n = models.PositiveBigIntegerField(default=0)
    vectors_path = models.CharField(max_length=500, blank=True, help_text="N×D float32 .npy, relative to DATA_DIR")
    ids_path = models.CharField(max_length=500, blank=True, help_text="N int64 Galaxy ids, row order")
    checksum = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    index_path = models.CharField(max_length=500, blank=True)
    index_kind = models.CharField(max_length=32, blank=True)
    index_config = models.JSONField(default=dict, blank=True)
    index_status = models.CharField(max_length=16, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name or f"EmbeddingSet {self.pk}"


class LatentMap(models.Model):
    """UMAP coordinates (N×2) of an EmbeddingSet, in the same row order."""

    embedding_set = models.ForeignKey(EmbeddingSet, on_delete=models.CASCADE, related_name="maps")
    params = models.JSONField(default=dict, help_text="UMAPConfig")
    coords_path = models.CharField(max_length=500, blank=True)
    checksum = models.CharField(max_length=64, blank=True)
    n = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING)
    seconds = models.FloatField(null=True, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Collection(models.Model):
    """A named set of galaxies saved by one user (e.g. from a lasso on the map), optionally
    shared with a group (a team) or with everyone, read-only or editable (services/collections.py)."""

    class Sharing(models.TextChoices):
        NONE = "none", "only me"
        GROUP = "group", "a group"
        EVERYONE = "everyone", "everyone"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    galaxies = models.ManyToManyField("catalog.Galaxy", related_name="collections", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    shared_with = models.CharField(max_length=8, choices=Sharing.choices, default=Sharing.NONE)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="shared_collections")  # when shared_with == "group"
    editable = models.BooleanField(default=False)  # people it is shared with may add, remove and rename

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_collection_name_per_user")]

    def __str__(self):
        return self.name
