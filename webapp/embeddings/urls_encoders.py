"""Encoders: list, train form, detail, checkpoint upload (see views_encoders)."""
urlpatterns: list = []
