"""Latent maps, sky view, similarity search and their JSON API (see views_map)."""
urlpatterns: list = []
