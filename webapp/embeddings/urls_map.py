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
    path("collections/<int:collection_id>/export.csv", coll.collection_export, name="collection_export"),
    # JSON / binary API (described in openapi_map.py)
    path("api/maps/", maps.api_maps, name="map_api_list"),
    path("api/maps/<int:map_id>/", maps.api_map_detail, name="map_api_detail"),
    path("api/maps/<int:map_id>/points", maps.api_points, name="map_api_points"),
    path("api/maps/<int:map_id>/layers", maps.api_layers, name="map_api_layers"),
    path("api/maps/<int:map_id>/density", maps.api_density, name="map_api_density"),
    path("api/maps/<int:map_id>/mosaic", maps.api_mosaic, name="map_api_mosaic"),
    path("api/search/neighbours/<int:galaxy_id>", search.api_neighbours, name="search_api_neighbours"),
    path("api/search/similar", search.api_similar, name="search_api_similar"),
    path("api/search/sky", search.api_sky, name="search_api_sky"),
    path("api/search/upload", search.api_upload, name="search_api_upload"),
    path("api/search/galaxies", search.api_galaxies, name="search_api_galaxies"),
    path("api/collections/", coll.api_collections, name="collection_api_list"),
    path("api/collections/<int:collection_id>/", coll.api_collection_detail, name="collection_api_detail"),
    path("api/collections/<int:collection_id>/add", coll.api_collection_add, name="collection_api_add"),
    path("api/collections/<int:collection_id>/remove", coll.api_collection_remove, name="collection_api_remove"),
    path("api/collections/<int:collection_id>/delete", coll.api_collection_delete, name="collection_api_delete"),
]
