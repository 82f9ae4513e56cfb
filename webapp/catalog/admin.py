from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.browse import thumb_url


@admin.register(Survey)
class SurveyAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "status", "n_galaxies", "band_list", "image_kind", "pixel_scale_arcsec",
                    "psf_fwhm_arcsec", "is_simulated", "updated_at")
    list_filter = ("status", "image_kind", "is_simulated")
    search_fields = ("name", "slug", "description", "provenance")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("image_shape", "image_checksum", "store_path", "n_galaxies", "created_at", "updated_at",
                       "sample_thumbnails")
    actions = ("prerender_thumbnails",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "status", "is_simulated")}),
        ("Imaging", {"fields": ("bands", "image_kind", "pixel_scale_arcsec", "psf_fwhm_arcsec", "zero_points",
                                "depth", "viewer_url_template")}),
        ("Remote cutouts (surveys without a local image store)", {"fields": (
            "cutout_url_template", "cutout_layer", "cutout_field_arcsec")}),
        ("Image store (written by ingestion; read-only)", {"fields": (
            "store_path", "image_shape", "image_checksum", "n_galaxies", "sample_thumbnails")}),
        ("Provenance", {"fields": ("provenance", "created_at", "updated_at")}),
    )

    @admin.display(description="bands")
    def band_list(self, survey):
        return "".join(survey.bands or []) or "—"

    @admin.display(description="sample")
    def sample_thumbnails(self, survey):
        galaxies = survey.galaxies.only("id", "image_index").order_by("image_index")[:8] if survey.pk else []
        if not galaxies:
            return "—"
        return format_html_join("", '<img src="{}" width="64" height="64" style="margin-right:4px;background:#000">',
                                ((thumb_url(g, survey),) for g in galaxies))

    @admin.action(description="Pre-render thumbnails (queues a job per survey)")
    def prerender_thumbnails(self, request, queryset):
        from webapp.jobs.services import create_job
        for survey in queryset.filter(status=Survey.Status.READY):
            create_job("render_thumbnails", {"survey_id": survey.pk}, user=request.user,
                       title=f"Render thumbnails: {survey.name}")
        self.message_user(request, "Queued thumbnail jobs for the ready surveys.", messages.INFO)


@admin.register(Galaxy)
class GalaxyAdmin(admin.ModelAdmin):
    list_display = ("thumbnail_small", "source_id", "survey", "ra", "dec", "image_index")
    list_display_links = ("thumbnail_small", "source_id")
    list_filter = ("survey",)
    search_fields = ("source_id",)
    list_select_related = ("survey",)
    list_per_page = 50
    readonly_fields = ("thumbnail", "survey", "image_index")
    # No truth here either: the simulator's ground truth is for benchmarks/ and tests/ only, so
    # admins judge simulated galaxies by the same catalogue columns (gz_label, ...) as real ones.
    fieldsets = (
        (None, {"fields": ("thumbnail", "survey", "source_id", "ra", "dec", "image_index", "metadata")}),
    )

    @admin.display(description="cutout")
    def thumbnail_small(self, galaxy):
        return format_html('<img src="{}" width="48" height="48" style="background:#000" loading="lazy">',
                           thumb_url(galaxy, galaxy.survey))

    @admin.display(description="cutout")
    def thumbnail(self, galaxy):
        if not galaxy.pk:
            return "—"
        return format_html('<a href="/galaxies/{}/"><img src="{}" width="192" height="192" style="background:#000"></a>',
                           galaxy.pk, thumb_url(galaxy, galaxy.survey, size=192))
