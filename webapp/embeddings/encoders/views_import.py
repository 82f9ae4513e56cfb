"""Bring your own embeddings in the browser: the import page (curators queue an
"import_embeddings" job for a file under DATA_DIR/imports/) and the Parquet download of
any embedding set (streamed, services/export.py)."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify

from webapp.accounts.roles import role_required
from webapp.embeddings.forms import ImportEmbeddingsForm
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services.export import stream_parquet
from webapp.embeddings.services.external import import_root, importable_files
from webapp.jobs.models import Job
from webapp.jobs.services import create_job

RECENT_JOBS = 10


@role_required("curator")
def import_embeddings(request):
    files = importable_files()
    form = ImportEmbeddingsForm(request.POST or None, files_available=files)
    if request.method == "POST" and form.is_valid():
        params = form.job_params()
        job = create_job("import_embeddings", params, user=request.user, title=f"Import embeddings {params['path']}")
        messages.info(request, f"Import of {params['path']} queued (job {job.pk}).")
        return redirect("jobs:detail", job_id=job.pk)
    recent = Job.objects.filter(kind="import_embeddings").select_related("launched_by").order_by("-created_at", "-id")
    return render(request, "embeddings/import.html", {
        "form": form, "files": files, "root": import_root(), "recent": recent[:RECENT_JOBS],
    }, status=400 if request.method == "POST" else 200)


def embedding_set_parquet(request, set_id):
    es = get_object_or_404(EmbeddingSet.objects.select_related("encoder"), pk=set_id)
    if es.status != ArtifactStatus.READY:
        raise Http404(f"embedding set {es.pk} is {es.status}")
    response = StreamingHttpResponse(stream_parquet(es), content_type="application/vnd.apache.parquet")
    filename = f"{slugify(es.name) or 'embeddings'}-set{es.pk}.parquet"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
