"""Embeddings URLs, split by area so encoders and maps can evolve separately."""
from webapp.embeddings.urls_encoders import urlpatterns as encoder_urls
from webapp.embeddings.urls_map import urlpatterns as map_urls

app_name = "embeddings"
urlpatterns = [*encoder_urls, *map_urls]
