from django.urls import path

app_name = "anomalies"
urlpatterns: list = []
