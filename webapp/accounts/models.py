"""Personal API tokens: ``Authorization: Bearer lsk_<prefix>_<secret>`` on /api/ requests.

Only the prefix (to find the row) and the SHA-256 of the secret are stored; the whole token
is shown once, when it is created (webapp/accounts/tokens.py).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)  # what it is for, e.g. "laptop notebook"
    prefix = models.CharField(max_length=16, unique=True)  # public part, used to find the row
    secret_hash = models.CharField(max_length=64)  # sha256 hex of the secret part
    read_only = models.BooleanField(default=False)  # GET only, whatever the owner's role
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # null: never
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (lsk_{self.prefix}_…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
