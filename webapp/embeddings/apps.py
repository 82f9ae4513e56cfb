from django.apps import AppConfig


class EmbeddingsConfig(AppConfig):
    name = "webapp.embeddings"
    label = "embeddings"
