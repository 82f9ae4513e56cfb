"""Curator page: import expert labels into a task from a CSV, FITS or VOTable file
(services/label_import.py does the work; `manage.py import_labels` is the same from a terminal)."""
from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404, render

from webapp.accounts.roles import role_required
from webapp.labeling.models import Label, Task
from webapp.labeling.services import label_import

REPORT_ROWS = 500  # problems listed on the page (the count covers all)


def _sources(task: Task) -> list[dict]:
    from django.db.models import Count
    return list(Label.objects.filter(task=task).exclude(source="").values("source")
                .annotate(n=Count("id")).order_by("source"))


@role_required("curator")
def import_labels(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    context = {"task": task, "limit": settings.MAX_UPLOAD_BYTES, "radius": label_import.DEFAULT_RADIUS_ARCSEC,
               "source": "", "report": None, "error": None}
    status = 200
    if request.method == "POST":
        upload = request.FILES.get("file")
        context["source"] = request.POST.get("source", "")
        try:
            if upload is None:
                raise label_import.ImportProblem("choose a CSV, FITS or VOTable file")
            if upload.size > settings.MAX_UPLOAD_BYTES:
                raise label_import.ImportProblem(
                    f"the file has {upload.size:,} bytes; the limit is {settings.MAX_UPLOAD_BYTES:,}")
            try:
                radius = float(request.POST.get("radius") or label_import.DEFAULT_RADIUS_ARCSEC)
            except ValueError:
                raise label_import.ImportProblem("the radius must be a number of arcseconds") from None
            table = label_import.read_table(upload.read(), upload.name, request.POST.get("format") or None)
            report = label_import.import_labels(task, table, context["source"], radius)
            context.update(report=report, problems=report.problems[:REPORT_ROWS])
        except label_import.ImportProblem as exc:
            context["error"], status = str(exc), 400
    context["sources"] = _sources(task)
    return render(request, "labeling/import_labels.html", context, status=status)
