"""manage.py import_encoder PATH --name NAME [--surveys sdss_like des_like] [--embed]

Adds an encoder checkpoint trained elsewhere (e.g. on a bigger GPU machine, written with
ml.checkpoints.export_encoder, or a full training checkpoint) as a ready Encoder, exactly as
the upload page does (services.encoders.register_upload: the file is checked completely and
loaded without executing pickled code; a bad file leaves no row and no file). Unlike the
upload page it has no size limit, so it also takes large-preset checkpoints with their
optimizer state. With --embed it queues an embed job for the given surveys (one shared
embedding space); with --evaluate an evaluate_encoder job (kNN / linear probe against the
baselines, on the surveys' labels).
"""
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from ml.checkpoints import CheckpointError
from webapp.embeddings.services import encoders as service


class Command(BaseCommand):
    help = "Import an encoder checkpoint trained elsewhere as a ready encoder (same checks as the upload page)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="checkpoint file (.pt) in the latentsky-encoder/1 format")
        parser.add_argument("--name", default="", help="name shown on the encoders page (default: the file name)")
        parser.add_argument("--surveys", nargs="*", default=[], help="slugs of the surveys it was trained on / "
                                                                     "should embed (must match its bands and kind)")
        parser.add_argument("--embed", action="store_true", help="queue an embed job for --surveys")
        parser.add_argument("--evaluate", action="store_true", help="queue an evaluation job on --surveys "
                                                                     "(they need catalogue labels: gz_label or gz1_class)")

    def handle(self, *args, path, name, surveys, embed, evaluate, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path}: no such file")
        if (embed or evaluate) and not surveys:
            raise CommandError("--embed and --evaluate need --surveys")
        try:
            with open(source, "rb") as handle:
                encoder = service.register_upload(File(handle, name=source.name), name or source.stem, surveys)
        except (CheckpointError, service.SurveyProblem) as exc:
            raise CommandError(f"{source.name} cannot be used: {exc}") from None
        dim = encoder.config["encoder"]["feature_dim"]
        self.stdout.write(self.style.SUCCESS(f"Encoder #{encoder.pk} {encoder.name!r} imported ({dim}-d, "
                                             f"{encoder.config['parameters']:,} parameters)"))
        if embed:
            job = service.launch_embedding(encoder, list(surveys))
            self.stdout.write(f"embed job #{job.pk} queued for {', '.join(surveys)}")
        if evaluate:
            job = service.launch_evaluation(encoder)
            self.stdout.write(f"evaluate job #{job.pk} queued")
