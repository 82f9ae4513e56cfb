"""Collections pages: list, one collection, remove, rename, delete, share, CSV export (JSON API: api.py)."""
from django.urls import path

from webapp.embeddings.collections import views

urlpatterns = [
    path("collections/", views.collection_list, name="collection_list"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection_detail"),
    path("collections/<int:collection_id>/remove", views.collection_remove, name="collection_remove"),
    path("collections/<int:collection_id>/rename", views.collection_rename, name="collection_rename"),
    path("collections/<int:collection_id>/delete", views.collection_delete, name="collection_delete"),
    path("collections/<int:collection_id>/share", views.collection_share, name="collection_share"),
    path("collections/<int:collection_id>/export.csv", views.collection_export, name="collection_export"),
]
