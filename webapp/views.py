import sys

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render


def home(request):
    return redirect("catalog:survey_list")


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


def forbidden(request, exception=None):
    message = str(exception) if exception else "You do not have permission for this action."
    if request.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json"):
        return JsonResponse({"error": message}, status=403)
    return render(request, "403.html", {"message": message}, status=403)


def server_error(request):
    """handler500: a database outage becomes a clear 503; anything else a plain 500 page."""
    from webapp.middleware import database_unavailable_response, is_database_outage

    exception = sys.exc_info()[1]
    if is_database_outage(exception):
        return database_unavailable_response(request, exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "internal error; it has been logged"}, status=500)
    from django.http import HttpResponseServerError
    from django.template.loader import render_to_string
    return HttpResponseServerError(render_to_string("500.html"))
