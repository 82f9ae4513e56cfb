"""manage.py export_embeddings SET_ID OUT.parquet: write an embedding set as an embedding table
(id, ra, dec, embedding + catalogue columns) that import_embeddings reads back."""
import sys

from django.core.management.base import BaseCommand, CommandError

from webapp.cli import print_progress
from webapp.embeddings.models import EmbeddingSet
from webapp.embeddings.services.export import export_embedding_set


class Command(BaseCommand):
    help = "Export an embedding set to Parquet (the layout import_embeddings reads)."

    def add_arguments(self, parser):
        parser.add_argument("set_id", type=int, help="EmbeddingSet id")
        parser.add_argument("out", help="output .parquet path")

    def handle(self, *args, **options):
        es = EmbeddingSet.objects.select_related("encoder").filter(pk=options["set_id"]).first()
        if es is None:
            raise CommandError(f"no embedding set {options['set_id']}")
        try:
            n = export_embedding_set(es, options["out"], progress=print_progress)
        except ValueError as exc:
            sys.stderr.write("\n")
            raise CommandError(str(exc)) from None
        sys.stderr.write("\n")
        self.stdout.write(f"wrote {n:,} rows × {es.dim} to {options['out']}")
