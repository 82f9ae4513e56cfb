"""What every /api/ endpoint shares: login and roles, the JSON body parser, the error mapping.

The API is a django-ninja ``NinjaAPI`` (assembled in webapp/api.py) with one ``Router`` per
app (``webapp/<app>/api*.py``).  Each request passes, in this order:

1. LoginRequiredMiddleware: a Bearer token (webapp.accounts.tokens) makes the request act as
   its owner, a bad one is a 401 with the reason; anonymous requests get 401
   ``{"error": "authentication required"}``.
2. ``Login`` (the API's auth, ninja's SessionAuth): the body size cap; for a session the CSRF
   token on writes, for a token no CSRF but a read-only token may only GET; and for write
   operations the role (``role("labeler")``, the owner's current groups for a token): 403
   ``{"error": ...}`` before any input is parsed, so a refused request never reaches
   validation or a service.
3. The operation's typed parameters (Path/Query/Body schemas); a bad value is a 400.
4. The view: one service call, a typed response.

Every error is ``{"error": "<what was wrong>"}`` with its status (see ``install_error_handlers``).
"""
from __future__ import annotations

import json
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import SessionAuth
from pydantic import BaseModel, ConfigDict

from webapp.accounts.roles import has_role, role_rank
from webapp.accounts.tokens import TokenRejected, authenticate_request

# JSON request bodies larger than this are refused (413) before they are read; multipart
# uploads (search by image) are capped by settings.MAX_UPLOAD_BYTES plus room for the form.
MAX_JSON_BODY = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Error(Schema):
    """Every API error: a sentence that says what was wrong."""
    error: str


class Out(BaseModel):
    """Base of response (and query) schemas: declared fields are checked, extra keys pass through
    unchanged.  A pydantic model, not ninja's Schema, whose ORM-attribute reading drops extras."""
    model_config = ConfigDict(extra="allow")


class BodyError(Exception):
    """A request body the API cannot read (too large, not JSON, not an object)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_body_size(request: HttpRequest) -> None:
    """413 unless the declared body fits the cap of its kind (checked before the body is read)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyError(400, "Content-Length must be an integer") from None
    multipart = (request.content_type or "").startswith("multipart/")
    limit = settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD if multipart else MAX_JSON_BODY
    if length > limit:
        raise BodyError(413, f"the request body has {length} bytes; the limit is {limit} bytes")


class JsonBody(Parser):
    """The one JSON body parser: a JSON object or nothing (an empty body reads as {})."""

    def parse_body(self, request: HttpRequest) -> dict:
        if len(request.body) > MAX_JSON_BODY:  # a body sent without Content-Length
            raise BodyError(413, f"the request body is larger than {MAX_JSON_BODY} bytes")
        try:
            data = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BodyError(400, f"the request body is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BodyError(400, "the request body must be a JSON object")
        return data


class Login(SessionAuth):
    """Session login with CSRF on writes (ninja's SessionAuth), or a Bearer token (no CSRF;
    read-only tokens only GET), plus, optionally, a role.

    The role check raises PermissionDenied (403) rather than returning None (which ninja
    would answer with 401): the user is logged in but not allowed.
    """

    def __init__(self, role: str | None = None):
        if role is not None:
            role_rank(role)  # fail at import time on a typo
        self.role = role
        super().__init__(csrf=True)

    def __call__(self, request: HttpRequest):
        check_body_size(request)
        token = authenticate_request(request)  # normally done already by the middleware
        if token is None:
            return super().__call__(request)  # session: CSRF on writes, then authenticate()
        if token.read_only and request.method not in SAFE_METHODS:
            raise PermissionDenied("this token is read-only")
        return self.authenticate(request, None)

    def authenticate(self, request: HttpRequest, key):
        if not request.user.is_authenticated:
            return None
        if self.role and not has_role(request.user, self.role):
            raise PermissionDenied(f"This action needs the {self.role} role.")
        return request.user


@lru_cache(maxsize=None)
def role(name: str) -> Login:
    """``auth=role("labeler")`` on an operation: that role or better (see webapp.accounts.roles)."""
    return Login(name)


def required_role(operation) -> str | None:
    return next((getattr(a, "role", None) for a in operation.auth_callbacks), None)


# ----------------------------------------------------------------- errors

def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


FRIENDLY = {
    "int_parsing": "must be an integer", "int_type": "must be an integer", "int_from_float": "must be an integer",
    "float_parsing": "must be a number", "float_type": "must be a number", "finite_number": "must be finite",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "string_type": "must be a string", "list_type": "must be a list", "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object", "missing": "is required", "extra_forbidden": "is not a known field",
}


def describe(err: dict) -> str:
    """'class_index must be an integer (got 'x')' from one pydantic error."""
    loc = list(err.get("loc") or ())
    while loc and loc[0] in ("body", "query", "path", "form", "file", "params", "payload"):
        loc.pop(0)
    field = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    text = FRIENDLY.get(kind)
    if text is None and kind.startswith(("greater_than", "less_than")):
        words = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}
        limit = next(iter(ctx.values()), "")
        text = f"must be {words.get(kind, kind)} {limit}"
    elif text is None and kind == "literal_error":
        text = f"must be {ctx.get('expected', 'one of the listed values')}"
    elif text is None and kind in ("string_too_long", "too_long"):
        text = f"must have at most {ctx.get('max_length')} {'characters' if 'string' in kind else 'items'}"
    elif text is None and kind in ("string_too_short", "too_short"):
        text = "must be non-empty" if ctx.get("min_length") == 1 else \
            f"must have at least {ctx.get('min_length')} {'characters' if 'string' in kind else 'items'}"
    text = text or str(err.get("msg", "is not valid"))
    shown = err.get("input")
    got = f" (got {shown!r})" if kind not in ("missing",) and isinstance(shown, (str, int, float, bool)) else ""
    return f"{field or 'the request'} {text}{got}"


def _validation(request, exc: ValidationError):
    return error(400, "; ".join(dict.fromkeys(describe(e) for e in exc.errors)))


def _http_error(request, exc: HttpError):
    cause = exc.__cause__
    if isinstance(cause, BodyError):  # ninja wraps parser errors as "Cannot parse request body"
        return error(cause.status, str(cause))
    return error(exc.status_code, str(exc.message))


def _reraise(request, exc):
    """Anything unmapped propagates to Django: a database outage becomes the 503 of
    webapp.middleware, anything else the JSON 500 of webapp.views.server_error."""
    raise exc


def install_error_handlers(api, statuses: list[tuple[type[Exception], int]]) -> None:
    """The one error mapping.  ``statuses``: service exception -> status, most specific first
    (looked up along the exception's MRO, so a subclass listed anywhere wins over its base)."""
    api.add_exception_handler(ValidationError, _validation)
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(BodyError, lambda request, exc: error(exc.status, str(exc)))
    api.add_exception_handler(AuthenticationError, lambda request, exc: error(401, "authentication required"))
    api.add_exception_handler(TokenRejected, lambda request, exc: error(401, str(exc)))
    api.add_exception_handler(PermissionDenied, lambda request, exc: error(
        403, str(exc) or "You do not have permission for this action."))
    api.add_exception_handler(Http404, lambda request, exc: error(404, str(exc) or "not found"))
    api.add_exception_handler(Exception, _reraise)
    for exc_class, status in statuses:
        api.add_exception_handler(exc_class, lambda request, exc, status=status: error(status, message(exc)))


def message(exc: Exception) -> str:
    """The exception's sentence (a KeyError's str() would add quotes around it)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def id_list(text: str | None, name: str, limit: int = 500) -> list[int]:
    """'12,40,41' -> [12, 40, 41] (at most ``limit``); ValueError (400) naming the parameter."""
    try:
        return [int(x) for x in (text or "").split(",") if x.strip()][:limit]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers") from None
