from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "webapp.catalog"
    label = "catalog"

    def ready(self):
        from webapp.catalog.services.crossmatch import counterparts_panel
        from webapp.catalog.views import register_detail_panel

        register_detail_panel(counterparts_panel)
