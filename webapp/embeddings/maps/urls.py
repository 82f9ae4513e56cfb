"""Latent maps and the sky view: map list, launch, index build, one map, its sky view (JSON API: api.py)."""
from django.urls import path

from webapp.embeddings.maps import views

urlpatterns = [
    path("maps/", views.map_home, name="map_home"),
    path("maps/launch", views.map_launch, name="map_launch"),
    path("maps/build-index", views.map_build_index, name="map_build_index"),
    path("maps/<int:map_id>/", views.map_detail, name="map_detail"),
    path("sky/<int:map_id>/", views.sky_view, name="sky_view"),
]
