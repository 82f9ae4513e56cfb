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
