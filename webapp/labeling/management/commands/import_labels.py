"""manage.py import_labels TASK FILE --source "GZ2 expert" [--radius 1.0] [--format csv|fits|votable]

Imports expert labels into a task (TASK: its id or name) exactly as the curator page does
(webapp/labeling/services/label_import.py): rows match galaxies by id or by RA/Dec within the
radius; unmatched, ambiguous or bad rows are listed with their row number; a re-run with the
same source adds nothing.  Exits non-zero when any row was skipped.
"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.labeling.models import Task
from webapp.labeling.services import label_import


class Command(BaseCommand):
    help = "Import expert labels into a task from a CSV, FITS or VOTable file."

    def add_arguments(self, parser):
        parser.add_argument("task", help="task id or name")
        parser.add_argument("path", help="CSV, FITS or VOTable file")
        parser.add_argument("--source", required=True, help='who gave these labels, e.g. "GZ2 expert"')
        parser.add_argument("--radius", type=float, default=label_import.DEFAULT_RADIUS_ARCSEC,
                            help="RA/Dec match radius in arcsec (default 1.0)")
        parser.add_argument("--format", default=None, help="csv, fits or votable (default: from the extension)")

    def handle(self, task, path, source, radius, format, **options):
        found = Task.objects.filter(pk=int(task)).first() if task.isdigit() else Task.objects.filter(name=task).first()
        if found is None:
            raise CommandError(f"no task {task!r}")
        file = Path(path)
        if not file.is_file():
            raise CommandError(f"no file {path}")
        try:
            table = label_import.read_table(file.read_bytes(), file.name, format)
            report = label_import.import_labels(found, table, source, radius)
        except label_import.ImportProblem as exc:
            raise CommandError(str(exc)) from None
        for row, reason in report.problems:
            self.stderr.write(f"row {row}: {reason}")
        self.stdout.write(report.summary())
        if report.problems:
            raise CommandError(f"{report.skipped} rows skipped (listed above)")
