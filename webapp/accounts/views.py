"""The account page: your role, and your personal API tokens (create, shown once; revoke)."""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.models import ApiToken
from webapp.accounts.roles import role_required
from webapp.accounts.tokens import create_token, revoke_token

EXPIRY_CHOICES = (("", "never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year"))


def _page(request, *, new_token: str | None = None, error: str | None = None, status: int = 200):
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "accounts/account.html", {
        "tokens": tokens, "new_token": new_token, "error": error, "expiry_choices": EXPIRY_CHOICES,
        "api_base": request.build_absolute_uri("/api/"),
    }, status=status)


@require_GET
def account(request):
    return _page(request)


@require_POST
@role_required("viewer")
def token_create(request):
    expiry = request.POST.get("expires_in_days", "")
    try:
        days = int(expiry) if expiry else None
        _token, plain = create_token(request.user, request.POST.get("name", ""),
                                     read_only=request.POST.get("read_only") == "on", expires_in_days=days)
    except ValueError as exc:
        message = str(exc) if "invalid literal" not in str(exc) else "expiry must be a number of days"
        return _page(request, error=message, status=400)
    return _page(request, new_token=plain)  # the only time the token is ever shown


@require_POST
@role_required("viewer")
def token_revoke(request, token_id: int):
    try:
        token = revoke_token(request.user, token_id)
    except LookupError:
        messages.error(request, "No such token.")
    else:
        messages.success(request, f"Token “{token.name}” revoked; requests with it now get 401.")
    return redirect("accounts:account")
