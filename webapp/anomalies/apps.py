from django.apps import AppConfig


class AnomaliesConfig(AppConfig):
    name = "webapp.anomalies"
    label = "anomalies"
    verbose_name = "Anomalies"

    def ready(self):
        # Contribute an "anomaly score" colour to the latent map and a panel to galaxy pages.
        from webapp.anomalies.services.layers import anomaly_colour_layers, galaxy_panel
        from webapp.catalog.views import register_detail_panel
        from webapp.embeddings.services.colours import register_colour_provider

        register_colour_provider(anomaly_colour_layers)
        register_detail_panel(galaxy_panel)
