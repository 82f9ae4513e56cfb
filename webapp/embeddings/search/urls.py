"""The similarity search page (JSON API: api.py)."""
from django.urls import path

from webapp.embeddings.search import views

urlpatterns = [
    path("search/", views.search_home, name="search_home"),
]
