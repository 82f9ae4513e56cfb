"""manage.py fill_sky_columns [--survey SLUG] [--all]: compute Galaxy.healpix and Galaxy.mag for
rows written before those columns existed (or by code that bypassed insert_galaxies).  Batched
and re-runnable; the catalog migration does the same for small tables."""
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from webapp.catalog.models import Survey
from webapp.catalog.services.galaxy_rows import fill_sky_columns
from webapp.cli import print_progress


class Command(BaseCommand):
    help = "Fill the HEALPix cell and promoted magnitude of existing galaxies, in batches."

    def add_arguments(self, parser):
        parser.add_argument("--survey", default="", help="only this survey (slug)")
        parser.add_argument("--batch", type=int, default=5000, help="rows per transaction")
        parser.add_argument("--all", action="store_true", help="recompute every row, not only missing ones")

    def handle(self, *args, survey, batch, all, **options):
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        survey_id = None
        if survey:
            found = Survey.objects.filter(slug=survey).first()
            if found is None:
                raise CommandError(f"no survey with slug {survey!r}")
            survey_id = found.pk
        start = time.monotonic()
        n = fill_sky_columns(batch_size=batch, only_missing=not all, survey_id=survey_id, progress=print_progress)
        sys.stderr.write("\n")
        self.stdout.write(self.style.SUCCESS(f"Filled {n} galaxies in {time.monotonic() - start:.1f} s"))
