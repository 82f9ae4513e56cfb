"""manage.py import_encoder PATH --name NAME [--surveys sdss_like des_like] [--embed]
   manage.py import_encoder --timm ARCH WEIGHTS [--greyscale] [--image-size 224] [--surveys sdss-gz1-real] [--embed]

Adds an encoder checkpoint trained elsewhere (e.g. on a bigger GPU machine, written with
ml.checkpoints.export_encoder, or a full training checkpoint) as a ready Encoder, exactly as
the upload page does (services.encoders.register_upload: the file is checked completely and
loaded without executing pickled code; a bad file leaves no row and no file). Unlike the
upload page it has no size limit, so it also takes large-preset checkpoints with their
optimizer state. With --embed it queues an embed job for the given surveys (one shared
embedding space); with --evaluate an evaluate_encoder job (kNN / linear probe against the
baselines, on the surveys' labels).

With ``--timm ARCH WEIGHTS`` it builds the timm architecture ARCH (``convnext_nano``,
``efficientnet_b0``, ``resnet18``, ...; a Zoobot hub name such as
``hf_hub:mwalmsley/zoobot-encoder-convnext_nano`` maps to its architecture) and loads the
local state dict WEIGHTS (safetensors, or a .pth/.bin/.ckpt read with ``weights_only``; a
Zoobot Lightning checkpoint's ``encoder.`` prefix is stripped). Nothing is downloaded. See
ml/timm_encoder.py for the input those weights expect.
"""
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from ml.checkpoints import CheckpointError
from webapp.embeddings.services import encoders as service


class Command(BaseCommand):
    help = "Import an encoder checkpoint trained elsewhere as a ready encoder (same checks as the upload page)."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="checkpoint file (.pt) in the latentsky-encoder/1 format")
        parser.add_argument("--timm", nargs=2, metavar=("ARCH", "WEIGHTS"),
                            help="a timm architecture and a local state dict (safetensors or .pth), e.g. Zoobot's "
                                 "encoders: --timm convnext_nano zoobot-encoder-convnext_nano.safetensors")
        parser.add_argument("--image-size", type=int, default=None,
                            help="--timm: network input side in pixels (default: the architecture's, 224)")
        parser.add_argument("--greyscale", action="store_true",
                            help="--timm: average the survey's bands into the weights' channel(s) "
                                 "(Zoobot's greyscale encoders)")
        parser.add_argument("--imagenet-norm", action="store_true",
                            help="--timm: ImageNet mean/std for ImageNet weights (Zoobot's take [0, 1] pixels as is)")
        parser.add_argument("--crop-fraction", type=float, default=1.0,
                            help="--timm: centre fraction of each cutout fed to the network (default 1)")
        parser.add_argument("--bands", default="", help="--timm without --surveys: band names of the images the "
                                                        "encoder will embed, comma-separated (default R,G,B)")
        parser.add_argument("--name", default="", help="name shown on the encoders page (default: the file name)")
        parser.add_argument("--surveys", nargs="*", default=[], help="slugs of the surveys it was trained on / "
                                                                     "should embed (must match its bands and kind)")
        parser.add_argument("--embed", action="store_true", help="queue an embed job for --surveys")
        parser.add_argument("--evaluate", action="store_true", help="queue an evaluation job on --surveys "
                                                                     "(they need catalogue labels: gz_label or gz1_class)")

    def handle(self, *args, path, name, surveys, embed, evaluate, timm, **options):
        if bool(path) == bool(timm):
            raise CommandError("give either a checkpoint PATH or --timm ARCH WEIGHTS")
        arch, path = timm if timm else (None, path)
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path}: no such file")
        if (embed or evaluate) and not surveys:
            raise CommandError("--embed and --evaluate need --surveys")
        if not 0 < options["crop_fraction"] <= 1:
            raise CommandError("--crop-fraction must be in (0, 1]")
        try:
            with open(source, "rb") as handle:
                upload = File(handle, name=source.name)
                if arch is None:
                    encoder = service.register_upload(upload, name or source.stem, surveys)
                else:
                    bands = [b.strip() for b in options["bands"].split(",") if b.strip()] or None
                    timm_options = service.TimmOptions(
                        image_size=options["image_size"], greyscale=options["greyscale"],
                        imagenet_norm=options["imagenet_norm"], crop_fraction=options["crop_fraction"], bands=bands)
                    encoder = service.register_timm(upload, arch, name or source.stem, surveys, timm_options)
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
