"""Latent maps, sky view, similarity search, collections and their JSON API.

URL names start with map_, sky_, search_ or collection_ so the top navigation marks "Map"
as the current area (webapp/accounts/context.py).
"""
from django.urls import path

from webapp.embeddings import views_collections as coll
from webapp.embeddings import views_map as maps
from webapp.embeddings import views_search as search

urlpatterns = [
    path("maps/", maps.map_home, name="map_home"),
    path("maps/launch", maps.map_launch, name="map_launch"),
    path("maps/build-index", maps.map_build_index, name="map_build_index"),
    path("maps/<int:map_id>/", maps.map_detail, name="map_detail"),
    path("sky/<int:map_id>/", maps.sky_view, name="sky_view"),
    path("search/", search.search_home, name="search_home"),
    path("collections/", coll.collection_list, name="collection_list"),
    path("collections/<int:collection_id>/", coll.collection_detail, name="collection_detail"),
    path("collections/<int:collection_id>/remove", coll.collection_remove, name="collection_remove"),
    path("collections/<int:collection_id>/rename", coll.collection_rename, name="collection_rename"),
    path("collections/<int:collection_id>/delete", coll.collection_delete, name="collection_delete"),
    path("collections/<int:collection_id>/share", coll.collection_share, name="collection_share"),
    path("collections/<int:collection_id>/export.csv", coll.collection_export, name="collection_export"),
]
