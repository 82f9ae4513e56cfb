from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "webapp.labeling"
    label = "labeling"

    def ready(self):
        # The map offers each task's prediction and uncertainty as colour layers; the
        # galaxy page shows each task's prediction, uncertainty and people's votes.
        from webapp.catalog.views import register_detail_panel
        from webapp.embeddings.services.colours import register_colour_provider
        from webapp.labeling.colours import prediction_layers
        from webapp.labeling.views import detail_panel

        register_colour_provider(prediction_layers)
        register_detail_panel(detail_panel)
