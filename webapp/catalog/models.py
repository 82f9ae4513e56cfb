"""Surveys and galaxies.  Pixels live in a per-survey HDF5 image store (ml.imagestore);
rows keep the path, shape and checksum of that file."""
from pathlib import Path

from django.conf import settings
from django.db import models

from webapp.catalog.cutout_templates import TEMPLATE_HELP, template_validator


class Survey(models.Model):
    class ImageKind(models.TextChoices):
        FLUX = "flux", "calibrated flux per band"   # simulated, FITS, HDF5 arrays
        RGB = "rgb", "RGB colour image (JPEG/PNG)"   # e.g. SDSS gri JPEG cutouts
        NONE = "none", "catalogue only (no image store)"   # e.g. imported embedding tables

    class Status(models.TextChoices):
        EMPTY = "empty"
        INGESTING = "ingesting"
        READY = "ready"
        FAILED = "failed"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    bands = models.JSONField(default=list, help_text='band names, e.g. ["g", "r", "i"]')
    image_kind = models.CharField(max_length=8, choices=ImageKind.choices, default=ImageKind.FLUX)
    pixel_scale_arcsec = models.FloatField(null=True, blank=True, help_text="arcsec per pixel")
    psf_fwhm_arcsec = models.FloatField(null=True, blank=True, help_text="typical seeing FWHM, arcsec")
    zero_points = models.JSONField(default=dict, blank=True, help_text="per-band AB zero point (mag)")
    depth = models.JSONField(default=dict, blank=True, help_text="per-band 5-sigma point-source depth (mag) or sky noise")
    provenance = models.TextField(blank=True)
    viewer_url_template = models.CharField(
        max_length=300, blank=True,
        help_text="public viewer link with {ra} {dec} {source_id} placeholders")
    # Remote pixels: a survey without a local image store shows cutouts fetched from this URL
    # (services/remote_cutouts.py); a survey with a store ignores it.
    cutout_url_template = models.CharField(max_length=500, blank=True, validators=[template_validator],
                                           help_text=TEMPLATE_HELP)
    cutout_layer = models.CharField(max_length=64, blank=True,
                                    help_text="{layer} of the cutout URL, e.g. ls-dr10 (Legacy Survey viewer)")
    cutout_field_arcsec = models.FloatField(
        null=True, blank=True,
        help_text="width of a remote cutout on the sky (arcsec, default 64); {pixscale} = this / {size}")
    is_simulated = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.EMPTY)
    store_path = models.CharField(max_length=500, blank=True, help_text="relative to LATENTSKY_DATA_DIR")
    image_shape = models.JSONField(default=list, blank=True)  # [N, bands, H, W]
    image_checksum = models.CharField(max_length=64, blank=True)
    n_galaxies = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def has_images(self) -> bool:
        """False for a catalogue-only survey (imported embeddings): pages show a placeholder."""
        return self.image_kind != self.ImageKind.NONE and bool(self.store_path)

    @property
    def store_abspath(self) -> Path:
        return Path(settings.DATA_DIR) / self.store_path

    @property
    def remote_pixels(self) -> bool:
        """Cutouts come from cutout_url_template: no local image store and a template set."""
        return bool(self.cutout_url_template) and not self.store_path

    @property
    def cutout_host(self) -> str:
        from urllib.parse import urlparse
        return urlparse(self.cutout_url_template).hostname or "" if self.cutout_url_template else ""

    def viewer_url(self, galaxy: "Galaxy") -> str:
        if not self.viewer_url_template:
            return ""
        needs_position = "{ra}" in self.viewer_url_template or "{dec}" in self.viewer_url_template
        if needs_position and (galaxy.ra is None or galaxy.dec is None):
            return ""
        return self.viewer_url_template.format(ra=galaxy.ra, dec=galaxy.dec, source_id=galaxy.source_id)


class Galaxy(models.Model):
    # No index of its own: every composite index below starts with survey_id and serves its
    # lookups; each index costs time on bulk import (9 b-trees made 10^7 rows ~25 % slower).
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="galaxies", db_index=False)
    source_id = models.CharField(max_length=64, help_text="survey catalogue id, e.g. SDSS objID")
    ra = models.FloatField(null=True, blank=True, help_text="degrees, ICRS")
    dec = models.FloatField(null=True, blank=True, help_text="degrees, ICRS")
    image_index = models.PositiveBigIntegerField(help_text="row in the survey's image store (or in the imported table)")
    # Nested HEALPix cell of (ra, dec) at services.sky.HEALPIX_ORDER (cone search); null without a position.
    healpix = models.BigIntegerField(null=True, blank=True, editable=False,
                                     help_text="nested HEALPix index of (ra, dec) at order 12")
    # The survey's reference magnitude, promoted from metadata at ingest (services.sky.MAG_KEYS)
    # so that sorting and filtering on it use an index.
    mag = models.FloatField(null=True, blank=True, help_text="reference magnitude (from mag_r, r_mag, ...)")
    metadata = models.JSONField(default=dict, blank=True, help_text="catalogue columns shown to people")
    # Ground truth of simulated galaxies (class, rarity, ...).  Never shown in the UI;
    # benchmarks and simulated oracles read it.
    truth = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["survey_id", "image_index"]
        constraints = [
            models.UniqueConstraint(fields=["survey", "source_id"], name="unique_source_per_survey"),
            models.UniqueConstraint(fields=["survey", "image_index"], name="unique_image_row_per_survey"),
        ]
        # Keyset pages order by (column, id) inside a survey; each sortable column has its index
        # (the (survey, ra, id) one also serves RA ranges, so there is no separate (survey, ra, dec)).
        indexes = [models.Index(fields=["survey", "ra", "id"], name="galaxy_survey_ra_id"),
                   models.Index(fields=["survey", "dec", "id"], name="galaxy_survey_dec_id"),
                   models.Index(fields=["survey", "mag", "id"], name="galaxy_survey_mag_id"),
                   models.Index(fields=["survey", "healpix"], name="galaxy_survey_healpix")]
        verbose_name_plural = "galaxies"

    def __str__(self):
        return f"{self.survey.slug}:{self.source_id}"
