"""The browser ingest page: curators queue an "ingest" job from a server path."""
from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render

from webapp.accounts.roles import role_required
from webapp.catalog.forms import IngestForm
from webapp.catalog.services.ingest import PRESETS, allowed_roots
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

RECENT_JOBS = 10


@role_required("curator")
def ingest_new(request):
    form = IngestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        params = form.job_params()
        name = params.get("survey") or PRESETS.get(params.get("preset"), {}).get("survey", "survey")
        job = create_job("ingest", params, user=request.user, title=f"Ingest {name}")
        messages.info(request, f"Ingest of {name} queued (job {job.pk}).")
        return redirect("jobs:detail", job_id=job.pk)
    recent = Job.objects.filter(kind="ingest").select_related("launched_by").order_by("-created_at", "-id")
    return render(request, "catalog/ingest.html", {
        "form": form, "roots": allowed_roots(), "presets": PRESETS, "recent": recent[:RECENT_JOBS],
    }, status=400 if request.method == "POST" else 200)
