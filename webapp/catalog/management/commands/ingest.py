"""manage.py ingest <format> <path> --survey NAME [options]: ingest cutouts + catalogue as a survey.

Examples:
    manage.py ingest folder ../shared/data/gz1_sdss --preset gz1_sdss
    manage.py ingest folder ./cutouts --survey "My JPEGs" --catalog cat.csv --id-column objid --size 64
    manage.py ingest fits ./stamps --survey "DES stamps" --bands g,r,i
    manage.py ingest hdf5 Galaxy10.h5 --survey Galaxy10 --label-key galaxy10

Prints a summary and every problem ("file: reason"); exits non-zero when any
object was skipped (the good ones are published) or nothing could be ingested.
"""
import sys

from django.core.management.base import BaseCommand, CommandError

from webapp.catalog.services.ingest import FORMATS, PRESETS, NoGoodRows, build_options, ingest
from webapp.catalog.services.ingest_pixels import NAN_POLICIES, IngestError
from webapp.catalog.services.surveys import PublishError
from webapp.cli import print_progress

# CLI flag -> IngestOptions field, with argparse type and help.
OPTION_FLAGS = [
    ("--survey", "survey", str, "survey name (re-using a name updates that survey)"),
    ("--catalog", "catalog", str, "catalogue CSV/TSV/FITS table (relative: inside PATH)"),
    ("--id-column", "id_column", str, "id column (default: auto-detect OBJID/objid/id/source_id...)"),
    ("--ra-column", "ra_column", str, "RA column, degrees (default: auto-detect; optional)"),
    ("--dec-column", "dec_column", str, "Dec column, degrees (default: auto-detect; optional)"),
    ("--image-pattern", "image_pattern", str, 'image file pattern, e.g. "images/{id}.jpeg" or "{id}_{band}.fits"'),
    ("--size", "size", int, "stored cutout side in pixels (default 64)"),
    ("--crop-fraction", "crop_fraction", float, "centre fraction of each image kept before resizing (default 1.0; GZ1 0.4)"),
    ("--limit", "limit", int, "ingest at most N catalogue rows"),
    ("--bands", "bands", str, "comma-separated band names, blue to red (FITS/HDF5)"),
    ("--label-column", "label_column", str, "integer class column -> metadata <label-key>_class"),
    ("--label-key", "label_key", str, 'metadata key prefix for the class (default "label"; "gz1" adds GZ1 names)'),
    ("--nan-policy", "nan_policy", str, f"NaN/inf pixels: {' or '.join(NAN_POLICIES)} (default skip)"),
    ("--images-dataset", "images_dataset", str, 'HDF5 images dataset (default "images")'),
    ("--labels-dataset", "labels_dataset", str, 'HDF5 labels dataset (default "ans")'),
    ("--max-pixels", "max_pixels", int, "refuse images declaring more pixels than this"),
    ("--workers", "workers", int, "threads decoding JPEG/PNG (default 1)"),
    ("--description", "description", str, "survey description"),
    ("--provenance", "provenance", str, "where the data came from"),
    ("--pixel-scale", "pixel_scale_arcsec", float, "arcsec per pixel of the input images"),
    ("--psf-fwhm", "psf_fwhm_arcsec", float, "typical seeing FWHM, arcsec"),
    ("--viewer-url", "viewer_url_template", str, "viewer link template with {ra} {dec} {source_id}"),
]


class Command(BaseCommand):
    help = "Ingest image cutouts and a catalogue as a survey (atomic; re-runs are idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("format", choices=sorted(FORMATS), help="input format")
        parser.add_argument("path", help="input folder (or HDF5 file)")
        parser.add_argument("--preset", choices=sorted(PRESETS), help="named set of options, e.g. gz1_sdss")
        for flag, dest, kind, text in OPTION_FLAGS:
            parser.add_argument(flag, dest=dest, type=kind, help=text)
        parser.add_argument("--show-errors", type=int, default=50, help="problems printed (default 50)")

    def handle(self, *args, **options):
        path, show_errors = options["path"], options["show_errors"]
        params = {"format": options["format"], "preset": options.get("preset")}
        params.update({dest: options.get(dest) for _, dest, _, _ in OPTION_FLAGS})
        try:
            fmt, opts = build_options(params)
            report = ingest(fmt, path, opts, progress=print_progress)
        except NoGoodRows as exc:
            sys.stderr.write("\n")
            self._print_errors(exc.report.errors, show_errors)
            raise CommandError(str(exc)) from None
        except (IngestError, PublishError) as exc:
            sys.stderr.write("\n")
            raise CommandError(str(exc)) from None
        sys.stderr.write("\n")
        for note in report.notes:
            self.stdout.write(f"note: {note}")
        self._print_errors(report.errors, show_errors)
        self.stdout.write(f"Survey {report.survey!r} ({report.slug}): {report.ingested} galaxies, "
                          f"store {report.shape}, sha256 {report.checksum[:12]}, changes {report.changes}")
        if report.errors:
            raise CommandError(f"{report.summary()}: {report.skipped} problem(s) listed above; "
                               "the good objects were ingested")
        self.stdout.write(self.style.SUCCESS(report.summary()))

    def _print_errors(self, errors, limit):
        for line in errors[:limit]:
            self.stderr.write(f"  skipped {line}")
        if len(errors) > limit:
            self.stderr.write(f"  … and {len(errors) - limit} more problem(s)")
