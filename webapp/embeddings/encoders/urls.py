"""Encoders: list, detail, train form, checkpoint upload, embed/evaluate/resume actions, JSON API (api.py)."""
from django.urls import path

from webapp.embeddings.encoders import views, views_import

urlpatterns = [
    path("encoders/", views.encoder_list, name="encoder_list"),
    path("encoders/train/", views.encoder_train, name="encoder_train"),
    path("encoders/upload/", views.encoder_upload, name="encoder_upload"),
    path("encoders/import/", views_import.import_embeddings, name="encoder_import"),
    path("embedding-sets/<int:set_id>/embeddings.parquet", views_import.embedding_set_parquet,
         name="embedding_set_parquet"),
    path("encoders/<int:encoder_id>/", views.encoder_detail, name="encoder_detail"),
    path("encoders/<int:encoder_id>/embed", views.encoder_embed, name="encoder_embed"),
    path("encoders/<int:encoder_id>/evaluate", views.encoder_evaluate, name="encoder_evaluate"),
    path("encoders/<int:encoder_id>/resume", views.encoder_resume, name="encoder_resume"),
    path("encoders/<int:encoder_id>/checkpoint.pt", views.encoder_download, name="encoder_download"),
]
