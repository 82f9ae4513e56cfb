"""Create, revoke and check personal API tokens.

A token reads ``lsk_<prefix>_<secret>``: the prefix (12 hex digits) finds the row, the
secret (43 URL-safe characters) is compared by its SHA-256 with ``hmac.compare_digest``.
Tokens authenticate /api/ requests only (webapp.accounts.middleware); the request then acts
as the owner with the owner's *current* role, and a read-only token may only read.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.utils import timezone

from webapp.accounts.models import ApiToken

SCHEME = "lsk"
MAX_TOKENS_PER_USER = 50
MAX_LIFETIME_DAYS = 3650
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


class TokenRejected(Exception):
    """A Bearer token that cannot be used (unknown, malformed, expired, revoked): a 401."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(user, name: str, *, read_only: bool = False, expires_in_days: int | None = None
                 ) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the plain token (shown once, never stored)."""
    name = (name or "").strip()
    if not name:
        raise ValueError("give the token a name (what it is for)")
    if len(name) > 100:
        raise ValueError("the token name must have at most 100 characters")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_LIFETIME_DAYS:
        raise ValueError(f"expiry must be between 1 and {MAX_LIFETIME_DAYS} days")
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_TOKENS_PER_USER:
        raise ValueError(f"you already have {MAX_TOKENS_PER_USER} tokens; revoke one first")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, secret_hash=_hash(secret),
                                    read_only=read_only, expires_at=expires)
    return token, f"{SCHEME}_{prefix}_{secret}"


def revoke_token(user, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens (LookupError if it is not theirs); revoking twice is harmless."""
    token = ApiToken.objects.filter(pk=token_id, user=user).first()
    if token is None:
        raise LookupError("no such token")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def bearer_value(request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None when there is no such header."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def check_token(plain: str) -> ApiToken:
    """The active token row for ``plain`` (owner loaded), or TokenRejected with the reason."""
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME or not parts[1] or not parts[2]:
        raise TokenRejected("the Bearer token is malformed (expected lsk_<prefix>_<secret>)")
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1][:16]).first()
    # Compare against a dummy hash when the prefix is unknown, so timing says nothing about prefixes.
    expected = token.secret_hash if token else _hash("no such token")
    if not hmac.compare_digest(expected, _hash(parts[2])) or token is None:
        raise TokenRejected("the Bearer token is not valid")
    if token.revoked_at is not None:
        raise TokenRejected("this token was revoked")
    if token.is_expired:
        raise TokenRejected("this token has expired")
    if not token.user.is_active:
        raise TokenRejected("the owner of this token is not active")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def authenticate_request(request) -> ApiToken | None:
    """For an /api/ request with a Bearer header: act as the token's owner (request.user,
    request.api_token).  None without such a header; TokenRejected for a bad token."""
    if getattr(request, "api_token", None) is not None:
        return request.api_token
    plain = bearer_value(request)
    if plain is None:
        return None
    token = check_token(plain)
    request.user = token.user
    request.api_token = token
    return token
