from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.accounts.roles import has_role, role_required
from webapp.jobs import plots
from webapp.jobs.models import Job
from webapp.jobs.services import gave_up_message, request_cancel


def job_list(request):
    jobs = Job.objects.select_related("launched_by").order_by("-created_at", "-id")
    status = request.GET.get("status")
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render(request, "jobs/list.html", {"page": page, "statuses": Job.Status.values, "status": status})


def job_detail(request, job_id):
    job = get_object_or_404(Job.objects.select_related("launched_by", "parent"), pk=job_id)
    loss_plot = plots.loss_curve(job) if job.metrics.get("loss") or job.kind == "train_encoder" else None
    return render(request, "jobs/detail.html", {
        "job": job, "children": job.children.order_by("id"), "loss_plot": loss_plot,
        "max_attempts": settings.JOB_MAX_ATTEMPTS,
        "gave_up": job.status == Job.Status.FAILED and job.message == gave_up_message(job.attempts)})


@require_POST
@role_required("curator")
def job_cancel(request, job_id):
    job = get_object_or_404(Job, pk=job_id)
    if job.launched_by_id not in (None, request.user.pk) and not has_role(request.user, "admin") \
            and not has_role(request.user, "curator"):
        raise PermissionDenied("Only the job's owner or an admin may cancel it.")
    if request_cancel(job):
        messages.info(request, f"Cancel requested for job {job.pk}.")
    else:
        messages.warning(request, f"Job {job.pk} has already finished.")
    if request.headers.get("accept", "").startswith("application/json"):
        return JsonResponse(Job.objects.get(pk=job.pk).as_dict())
    return redirect("jobs:detail", job_id=job.pk)
