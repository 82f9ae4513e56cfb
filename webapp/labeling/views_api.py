"""JSON API of the labeling app (described in webapp/labeling/openapi.py).

Plain function views: parse input, call one service, respond.  Reads need a login
(middleware); labels, undo and enqueue need the labeler role; rounds need curator.
"""
from __future__ import annotations

import json

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.roles import role_required
from webapp.labeling.models import Task
from webapp.labeling.services import queue as queue_service
from webapp.labeling.services.tasks import task_dict


def json_body(request) -> dict:
    """The request's JSON object; raises ValueError with a readable message."""
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def bad(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
def api_task_list(request):
    tasks = Task.objects.prefetch_related("surveys").order_by("name")
    return JsonResponse({"tasks": [task_dict(t) for t in tasks]})


@require_POST
@role_required("labeler")
def api_enqueue(request, task_id):
    task = get_object_or_404(Task, pk=task_id)
    try:
        ids = json_body(request).get("galaxy_ids")
        if not isinstance(ids, list) or not ids:
            raise ValueError("galaxy_ids must be a non-empty list of galaxy ids")
        if len(ids) > queue_service.MAX_ENQUEUE:
            raise ValueError(f"at most {queue_service.MAX_ENQUEUE} galaxies per request, got {len(ids)}")
        count = queue_service.enqueue_galaxies(task, ids, request.user)
    except ValueError as exc:
        return bad(str(exc))
    ignored = len(set(ids)) - count
    return JsonResponse({"task_id": task.pk, "enqueued": count, "ignored": ignored,
                         "label_url": f"/tasks/{task.pk}/label/",
                         "message": f"{count} galaxies are now first in the queue of {task.name}"
                                    + (f"; {ignored} are not in this task's surveys" if ignored else "")})
