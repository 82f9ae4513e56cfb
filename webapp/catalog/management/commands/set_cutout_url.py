"""manage.py set_cutout_url SURVEY TEMPLATE [--layer ls-dr10] [--field-arcsec 64]: remote cutouts.

SURVEY is a slug, a name or an id.  An empty TEMPLATE ("") clears it.  Example (Legacy Survey):

  manage.py set_cutout_url astropt-dr10 \\
    'https://www.legacysurvey.org/viewer/cutout.jpg?ra={ra}&dec={dec}&size={size}&layer={layer}&pixscale={pixscale}' \\
    --layer ls-dr10 --field-arcsec 64
"""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from webapp.catalog.models import Survey
from webapp.catalog.cutout_templates import EXAMPLE_TEMPLATES, PLACEHOLDERS


CHANGED = ("cutout_url_template", "cutout_layer", "cutout_field_arcsec")


class Command(BaseCommand):
    help = ("Set a survey's remote cutout URL template (used when the survey has no local image store). "
            "Placeholders: " + " ".join("{%s}" % p for p in PLACEHOLDERS) + ". Examples: "
            + " ; ".join(EXAMPLE_TEMPLATES.values()))

    def add_arguments(self, parser):
        parser.add_argument("survey", help="survey slug, name or id")
        parser.add_argument("template", help='URL template; "" clears it')
        parser.add_argument("--layer", default=None, help="{layer}, e.g. ls-dr10 (unchanged when omitted)")
        parser.add_argument("--field-arcsec", type=float, default=None,
                            help="cutout width on the sky in arcsec; {pixscale} = this / {size} (default 64)")

    def handle(self, *args, survey, template, layer, field_arcsec, **options):
        match = Q(slug=survey) | Q(name=survey)
        if survey.isdigit():
            match |= Q(pk=int(survey))
        found = list(Survey.objects.filter(match))
        if len(found) != 1:
            names = ", ".join(Survey.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no survey {survey!r} (surveys: {names})")
        target = found[0]
        target.cutout_url_template = template.strip()
        if layer is not None:
            target.cutout_layer = layer.strip()
        if field_arcsec is not None:
            if not 1.0 <= field_arcsec <= 3600.0:
                raise CommandError("--field-arcsec must be between 1 and 3600")
            target.cutout_field_arcsec = field_arcsec
        try:
            # Only the fields set here: an imported catalogue-only survey has no bands, which the
            # model's form validation would otherwise refuse although nothing about them changed.
            target.full_clean(exclude=[f.name for f in Survey._meta.fields if f.name not in CHANGED],
                              validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(errors) from None
        target.save(update_fields=[*CHANGED, "updated_at"])
        if not target.cutout_url_template:
            self.stdout.write(f"{target.slug}: remote cutouts cleared")
            return
        note = "" if target.remote_pixels else " (not used: the survey has a local image store)"
        self.stdout.write(self.style.SUCCESS(f"{target.slug}: remote cutouts from {target.cutout_url_template}"
                                             f" layer={target.cutout_layer or '-'}{note}"))
