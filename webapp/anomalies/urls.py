from django.urls import path

from webapp.anomalies import views

app_name = "anomalies"
urlpatterns = [
    path("anomalies/", views.home, name="home"),
    path("anomalies/score", views.score_new, name="score_new"),
    path("anomalies/<int:score_set_id>/review/", views.review, name="review"),
    path("anomalies/<int:score_set_id>/reviewed/", views.reviewed, name="reviewed"),
    path("anomalies/<int:score_set_id>/export.csv", views.export_list, {"fmt": "csv"}, name="export_csv"),
    path("anomalies/<int:score_set_id>/export.vot", views.export_list, {"fmt": "votable"}, name="export_votable"),
]
