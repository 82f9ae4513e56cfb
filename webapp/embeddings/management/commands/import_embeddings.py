"""manage.py import_embeddings FILE [--layout L] [--name N] [--survey-name S] [--id-column ...]

Import an embedding table made elsewhere (Parquet with id, ra, dec, embedding + catalogue
columns, or an N×D .npy with a CSV beside it) as a catalogue-only survey, an external
encoder and an embedding set (services/external.py; all or nothing).

Examples:
    manage.py import_embeddings table.parquet --name "AstroPT 95M"
    manage.py import_embeddings ls_dr10.parquet --layout aion_ls --survey-name "LS DR10 (AION)"
    manage.py import_embeddings vectors.npy --catalog vectors.csv --id-column objid

Prints a summary and the skipped rows ("row N (id X): reason"); exits non-zero when any row
was skipped (the good rows are imported) or nothing could be imported.
"""
import sys

from django.core.management.base import BaseCommand, CommandError

from ml.embedding_table import LAYOUTS, TableError
from webapp.cli import print_progress
from webapp.embeddings.services.external import ImportOptions, ImportProblem, import_embeddings


class Command(BaseCommand):
    help = "Import an embedding table (Parquet or .npy + CSV) as a catalogue-only survey + embedding set."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Parquet file, or .npy with a CSV catalogue")
        parser.add_argument("--layout", choices=sorted(LAYOUTS), default="latentsky",
                            help="column names of a known public table (default latentsky: id, ra, dec, embedding)")
        parser.add_argument("--name", default="", help="encoder and embedding set name (default: file name)")
        parser.add_argument("--survey-name", default="", help="survey name (default: --name)")
        parser.add_argument("--id-column", default="", help="id column (overrides the layout)")
        parser.add_argument("--ra-column", default="", help="RA column, degrees")
        parser.add_argument("--dec-column", default="", help="Dec column, degrees")
        parser.add_argument("--embedding-column", default="", help="vector column (Parquet)")
        parser.add_argument("--catalog", default="", help="CSV of a .npy input (default: same name, .csv)")
        parser.add_argument("--description", default="", help="survey description")
        parser.add_argument("--show-errors", type=int, default=50, help="skipped rows printed (default 50)")

    def handle(self, *args, **options):
        opts = ImportOptions(name=options["name"], layout=options["layout"], survey_name=options["survey_name"],
                             id_column=options["id_column"], ra_column=options["ra_column"],
                             dec_column=options["dec_column"], embedding_column=options["embedding_column"],
                             catalog_path=options["catalog"], description=options["description"])
        try:
            report = import_embeddings(options["file"], opts, progress=print_progress)
        except (ImportProblem, TableError) as exc:
            sys.stderr.write("\n")
            raise CommandError(str(exc)) from None
        sys.stderr.write("\n")
        for note in report.notes:
            self.stdout.write(f"note: {note}")
        for line in report.errors[:options["show_errors"]]:
            self.stdout.write(f"skipped {line}")
        self.stdout.write(f"Survey {report.slug} (id {report.survey_id}), encoder {report.encoder_id}, "
                          f"embedding set {report.embedding_set_id}: {report.summary()}")
        self.stdout.write("seconds per step: " + ", ".join(f"{k} {v}" for k, v in report.phases.items()))
        if report.skipped:
            raise CommandError(f"{report.skipped} row(s) skipped (listed above; the {report.imported:,} good rows "
                               "were imported)")
