from django.urls import path

from webapp.catalog import views

app_name = "catalog"
urlpatterns = [
    path("surveys/", views.survey_list, name="survey_list"),
]
