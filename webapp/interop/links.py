"""Short-lived signed URLs for what a page sends over SAMP.

TOPCAT and Aladin fetch a table or cutout by URL, without the browser's session cookie, so
the URL itself carries the authorisation: a payload ({"k": kind, ...}) signed with
django.core.signing (SECRET_KEY, salt below, zlib-compressed), accepted for TTL_SECONDS.
The payload is checked against the signed-in user when the link is made (views.samp_link);
serving it needs only a valid, unexpired signature.
"""
from __future__ import annotations

from django.core import signing
from django.urls import reverse

SALT = "latentsky.interop.samp-link"
TTL_SECONDS = 600  # 10 minutes: long enough for TOPCAT to fetch, short enough to be harmless if leaked
MAX_IDS = 20_000   # galaxies in one id-list table (a longer selection is cut, and the reply says so)


class LinkError(ValueError):
    """A bad, tampered or expired link (HTTP 403)."""


def pack_ids(ids) -> list[int]:
    """Sorted unique ids as deltas (compresses to a few bytes per id in the token)."""
    ordered = sorted({int(i) for i in ids})
    return [b - a for a, b in zip([0, *ordered], ordered)]


def unpack_ids(deltas) -> list[int]:
    out, total = [], 0
    for d in deltas:
        total += int(d)
        out.append(total)
    return out


def sign(payload: dict) -> str:
    return signing.dumps(payload, salt=SALT, compress=True)


def unsign(token: str, max_age: int = TTL_SECONDS) -> dict:
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise LinkError("this link has expired (links sent over SAMP last 10 minutes): send again") from None
    except signing.BadSignature:
        raise LinkError("invalid link") from None
    if not isinstance(payload, dict) or "k" not in payload:
        raise LinkError("invalid link")
    return payload


def absolute_url(request, payload: dict, filename: str) -> str:
    """The absolute URL (TOPCAT is another program) that serves `payload` as `filename`."""
    return request.build_absolute_uri(reverse("interop:samp_table", args=[sign(payload), filename]))
