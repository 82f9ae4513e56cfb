"""Jobs JSON API: recent/active/listed jobs and one job with its live metrics."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router

from webapp.apikit import Error, Out
from webapp.jobs.models import Job

router = Router()


class JobOut(Out):
    id: int
    kind: str
    title: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    progress: float = Field(description="0 to 1")
    message: str | None = None
    error: str | None = None
    attempts: int
    queue: str | None = None
    result: dict | list | None = None
    cancel_requested: bool
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    launched_by: str | None = Field(None, description="username")


class JobDetail(JobOut):
    metrics: dict = Field(description="live metrics, e.g. the training loss curve")


class JobList(Out):
    jobs: list[JobOut]


def parse_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x][:200]
    except ValueError:
        raise ValueError("ids must be comma-separated integers") from None


@router.get("/jobs/", response={200: JobList, 400: Error}, url_name="api_list",
            summary="Recent jobs, the active ones, or those with the given ids")
def api_job_list(request, ids: str | None = Query(None, description="comma-separated job ids"),
                 active: str | None = Query(None, description="any value: only queued and running jobs")):
    jobs = Job.objects.select_related("launched_by")
    if ids:
        jobs = jobs.filter(pk__in=parse_ids(ids))
    elif active:
        jobs = jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    return {"jobs": [j.as_dict() for j in jobs.order_by("-created_at", "-id")[:100]]}


@router.get("/jobs/{int:job_id}/", response={200: JobDetail, 404: Error}, url_name="api_detail",
            summary="One job with its live metrics (e.g. the training loss curve)")
def api_job_detail(request, job_id: int):
    job = get_object_or_404(Job.objects.select_related("launched_by"), pk=job_id)
    return {**job.as_dict(), "metrics": job.metrics}
