"""manage.py simulate_surveys --n 5000 --seed 0: render the SDSS-like and DES-like surveys."""
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from webapp.catalog.services.simulation import simulate_and_publish
from webapp.cli import print_progress


class Command(BaseCommand):
    help = "Simulate one galaxy population in an SDSS-like and a DES-like survey (GalSim)."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=5000, help="number of galaxies (same objects in both surveys)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--processes", type=int, default=2, help="rendering processes")

    def handle(self, *args, n, seed, processes, **options):
        if n < 10:
            raise CommandError("--n must be at least 10")
        start = time.monotonic()

        surveys = simulate_and_publish(n, seed, processes=processes, progress=print_progress)
        sys.stderr.write("\n")
        for survey in surveys:
            self.stdout.write(f"{survey.name}: {survey.n_galaxies} galaxies, shape {survey.image_shape}, "
                              f"sha256 {survey.image_checksum[:12]}")
        self.stdout.write(self.style.SUCCESS(f"Simulated {n} galaxies × {len(surveys)} surveys "
                                             f"in {time.monotonic() - start:.1f} s"))
