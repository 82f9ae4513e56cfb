from django.apps import AppConfig


class EmbeddingsConfig(AppConfig):
    name = "webapp.embeddings"
    label = "embeddings"

    def ready(self):
        # Map/search area: catalogue colour layers for the map, and the galaxy page's
        # "Similar galaxies" panel.
        from webapp.catalog.views import register_detail_panel
        from webapp.embeddings.services.colours import catalogue_layers, register_colour_provider
        from webapp.embeddings.search.views import neighbours_panel

        register_colour_provider(catalogue_layers)
        register_detail_panel(neighbours_panel)
