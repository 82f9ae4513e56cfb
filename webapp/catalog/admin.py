from django.contrib import admin

from webapp.catalog.models import Galaxy, Survey


@admin.register(Survey)
class SurveyAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "n_galaxies", "image_kind", "pixel_scale_arcsec", "psf_fwhm_arcsec", "is_simulated")
    list_filter = ("status", "image_kind", "is_simulated")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("image_shape", "image_checksum", "store_path", "created_at", "updated_at")


@admin.register(Galaxy)
class GalaxyAdmin(admin.ModelAdmin):
    list_display = ("source_id", "survey", "ra", "dec", "image_index")
    list_filter = ("survey",)
    search_fields = ("source_id",)
    list_select_related = ("survey",)
