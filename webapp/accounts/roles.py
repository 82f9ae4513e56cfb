"""Roles are Django groups, ordered from least to most trusted.

viewer   looks at catalogues, maps and predictions.
labeler  also labels galaxies and scores anomaly candidates.
curator  also ingests data and launches jobs (training, embedding, maps).
admin    everything, including Django admin.

A user holds a role if they are in that group or any more trusted one;
superusers hold every role.
"""
from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied

ROLES = ("viewer", "labeler", "curator", "admin")


def role_rank(role: str) -> int:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
    return ROLES.index(role)


def highest_role(user) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return "admin"
    cached = getattr(user, "_latentsky_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    held = [r for r in ROLES if r in names]
    role = max(held, key=role_rank) if held else None
    user._latentsky_role = role
    return role


def has_role(user, role: str) -> bool:
    held = highest_role(user)
    return held is not None and role_rank(held) >= role_rank(role)


def role_required(role: str):
    """View decorator: 403 unless the logged-in user holds ``role`` or better."""
    role_rank(role)  # fail at import time on a typo

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(f"This action needs the {role} role.")
            return view(request, *args, **kwargs)
        wrapped.required_role = role
        return wrapped
    return decorator
