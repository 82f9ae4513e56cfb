"""Labeling pages: task list, task page with plots, task form and the labeling page."""
from __future__ import annotations

from django.shortcuts import render

from webapp.labeling.models import Task


def task_list(request):
    tasks = Task.objects.prefetch_related("surveys").select_related("embedding_set").order_by("name")
    return render(request, "labeling/task_list.html", {"tasks": tasks})
