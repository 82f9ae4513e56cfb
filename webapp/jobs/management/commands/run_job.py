"""Run one job (and the follow-ups it starts) in this process, without a Celery worker.

    manage.py run_job build_index --param embedding_set_id=3
    manage.py run_job anomaly_scores --params '{"embedding_set_id": 3}'
    manage.py run_job --job 42        # run a job a page or service already queued

For operators on a machine with no worker running, and for benchmarks that measure each job's
peak memory as its own process (benchmarks/scale.py).  The job is a normal Job row (it shows on
the Jobs page with its progress); Celery runs in eager mode here, so follow-up and child jobs run
inline too.  Exits non-zero when any job of the tree failed.
"""
from __future__ import annotations

import json
import sys
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from webapp.cli import render_bar
from webapp.jobs.models import Job
from webapp.jobs.registry import JOB_KINDS
from webapp.jobs.services import create_job, execute_job


def parse_param(text: str) -> tuple[str, object]:
    """``key=value``; the value is read as JSON when it parses (numbers, true, lists), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--param wants key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def tree_of(root_pk: int) -> list[Job]:
    jobs, frontier = [], [root_pk]
    while frontier:
        level = list(Job.objects.filter(pk__in=frontier).order_by("pk"))
        jobs += level
        frontier = list(Job.objects.filter(parent_id__in=frontier).values_list("pk", flat=True))
    return jobs


class Command(BaseCommand):
    help = "Run a job kind in this process (no worker needed), with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("kind", nargs="?", choices=sorted(JOB_KINDS))
        parser.add_argument("--job", type=int, default=None, help="run this queued job instead of a new one")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--params", default="{}", help="job params as one JSON object")

    def handle(self, *args, kind, job, param, params, **options):
        import workers.tasks  # noqa: F401  (registers the task that eager dispatch applies)
        from workers.celery import app

        try:
            values = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise CommandError("--params must be a JSON object")
        values.update(parse_param(p) for p in param)

        if (kind is None) == (job is None):
            raise CommandError("name a job kind, or --job ID of a queued job (not both)")
        if job is not None:
            existing = Job.objects.filter(pk=job).first()
            if existing is None or existing.status != Job.Status.QUEUED:
                raise CommandError(f"job #{job} does not exist" if existing is None
                                   else f"job #{job} is {existing.status}, not queued")
            job = existing
        else:
            with transaction.atomic():
                job = create_job(kind, values, dispatch=False)
        stop = threading.Event()
        bar = threading.Thread(target=self._draw, args=(job.pk, stop), daemon=True)
        bar.start()
        was_eager = app.conf.task_always_eager
        app.conf.task_always_eager = True  # children and follow-ups run here, in order
        try:
            execute_job(job.pk, worker="run_job")
        finally:
            app.conf.task_always_eager = was_eager
            stop.set()
            bar.join(timeout=5)
        jobs = tree_of(job.pk)
        sys.stderr.write("\n")
        for j in jobs:
            self.stdout.write(f"  #{j.pk} {j.kind:<18} {j.status:<9} {j.message[:80]}")
        failed = [j for j in jobs if j.status != Job.Status.SUCCEEDED]
        if failed:
            raise CommandError(f"job #{failed[0].pk} ({failed[0].kind}) {failed[0].status}: {failed[0].message}")
        self.stdout.write(json.dumps(Job.objects.get(pk=job.pk).result, default=str))

    @staticmethod
    def _draw(pk: int, stop: threading.Event) -> None:
        try:
            while not stop.wait(0.5):
                job = Job.objects.filter(pk=pk).only("progress", "message").first()
                if job is not None:
                    sys.stderr.write(f"\r  {render_bar(job.progress)} {job.progress * 100:5.1f}%  {job.message[:60]:<60}")
                    sys.stderr.flush()
        finally:
            connection.close()  # this thread's own connection
