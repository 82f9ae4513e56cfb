"""Queue the demo pipeline as jobs and (with --follow) show their progress bars."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from webapp.jobs.models import Job
from webapp.demo.pipeline import demo_steps, follow, launch, plan_demo


class Command(BaseCommand):
    help = "Simulate surveys, ingest real SDSS, train, embed, map and score — as visible jobs."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=5000, help="galaxies per simulated survey")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--epochs", type=int, default=12, help="encoder training epochs")
        parser.add_argument("--no-real", action="store_true", help="skip ingesting ../shared/data/gz1_sdss")
        parser.add_argument("--follow", dest="follow_progress", action="store_true", help="show progress until every job finished")
        parser.add_argument("--timeout", type=float, default=None, help="give up following after N seconds")
        parser.add_argument("--fresh", action="store_true",
                            help="queue every step even if this workspace already has its results")

    def handle(self, *args, n, seed, epochs, no_real, follow_progress, timeout, fresh, **options):
        if n < 10:
            raise CommandError("--n must be at least 10")
        user = get_user_model().objects.filter(username="demo").first()
        if fresh:
            steps, notes = demo_steps(n=n, seed=seed, epochs=epochs, include_real=not no_real), []
        else:
            steps, notes = plan_demo(n=n, seed=seed, epochs=epochs, include_real=not no_real)
        for note in notes:
            self.stdout.write(f"  • {note}")
        with transaction.atomic():
            roots = launch(steps, user=user)
        unfinished = list(Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
                          .exclude(pk__in=[j.pk for j in roots]))
        roots += unfinished
        if not roots:
            self.stdout.write(self.style.SUCCESS("The demo data is complete; nothing to queue "
                                                 "(use --fresh to rebuild it)."))
            return
        self.stdout.write(f"Queued jobs {', '.join('#%d' % j.pk for j in roots)} (follow-ups start as each finishes)")
        if follow_progress:
            ok = follow([j.pk for j in roots], out=self.stdout._out, timeout=timeout)
            if not ok:
                raise CommandError("some demo jobs failed or were cancelled; see the Jobs page for details")
            self.stdout.write(self.style.SUCCESS("All demo jobs succeeded."))
