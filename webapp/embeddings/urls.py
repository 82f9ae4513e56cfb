from django.urls import path

app_name = "embeddings"
urlpatterns: list = []
