"""Embeddings page URLs, one module per area (webapp/urls.py adds each area's JSON API routes).

Map-area URL names start with map_, sky_, search_ or collection_ so the top navigation marks
"Map" as the current area (webapp/accounts/context.py).
"""
from webapp.embeddings.collections.urls import urlpatterns as collection_urls
from webapp.embeddings.encoders.urls import urlpatterns as encoder_urls
from webapp.embeddings.maps.urls import urlpatterns as map_urls
from webapp.embeddings.search.urls import urlpatterns as search_urls

app_name = "embeddings"
urlpatterns = [*encoder_urls, *map_urls, *search_urls, *collection_urls]
