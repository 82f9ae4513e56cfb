"""Everything needs a login except the login page, static files and health check.

/api/ requests may instead carry ``Authorization: Bearer <token>`` (webapp.accounts.tokens):
the request then acts as the token's owner, without a session and without CSRF.  Pages
outside /api/ never accept tokens.
"""
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse

from webapp.accounts.tokens import TokenRejected, authenticate_request

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# /samp/t/: tables and cutouts fetched by TOPCAT/Aladin, authorised by their signed token
# (webapp/interop/links.py), since those programs have no session cookie.
OPEN_PREFIXES = ("/accounts/login", "/static/", "/healthz", "/admin/login", "/samp/t/")


def token_refused(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


class LoginRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                token = authenticate_request(request)  # a Bearer token replaces the session user
            except TokenRejected as exc:
                return token_refused(str(exc))
            if token is not None and token.read_only and request.method not in SAFE_METHODS:
                return JsonResponse({"error": "this token is read-only"}, status=403)
        if request.user.is_authenticated or request.path.startswith(OPEN_PREFIXES):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "authentication required"}, status=401)
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
