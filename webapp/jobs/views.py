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


def api_job_list(request):
    jobs = Job.objects.select_related("launched_by")
    ids = request.GET.get("ids")
    if ids:
        try:
            wanted = [int(x) for x in ids.split(",") if x][:200]
        except ValueError:
            return JsonResponse({"error": "ids must be comma-separated integers"}, status=400)
        jobs = jobs.filter(pk__in=wanted)
    elif request.GET.get("active"):
        jobs = jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    jobs = jobs.order_by("-created_at", "-id")[:100]
    return JsonResponse({"jobs": [j.as_dict() for j in jobs]})


def api_job_detail(request, job_id):
    job = get_object_or_404(Job.objects.select_related("launched_by"), pk=job_id)
    data = job.as_dict()
    data["metrics"] = job.metrics
    return JsonResponse(data)
