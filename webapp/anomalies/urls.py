from django.urls import path

from webapp.anomalies import views, views_api

app_name = "anomalies"
urlpatterns = [
    path("anomalies/", views.home, name="home"),
    path("anomalies/score", views.score_new, name="score_new"),
    path("anomalies/<int:score_set_id>/review/", views.review, name="review"),
    path("anomalies/<int:score_set_id>/reviewed/", views.reviewed, name="reviewed"),
    path("anomalies/<int:score_set_id>/export.csv", views.export_list, {"fmt": "csv"}, name="export_csv"),
    path("anomalies/<int:score_set_id>/export.vot", views.export_list, {"fmt": "votable"}, name="export_votable"),
    path("api/anomalies/score-sets/", views_api.api_score_sets, name="api_score_sets"),
    path("api/anomalies/score-sets/<int:score_set_id>/queue/", views_api.api_queue, name="api_queue"),
    path("api/anomalies/score-sets/<int:score_set_id>/reviews/", views_api.api_reviews, name="api_reviews"),
    path("api/anomalies/score-sets/<int:score_set_id>/undo/", views_api.api_undo, name="api_undo"),
    path("api/anomalies/score-sets/<int:score_set_id>/ranking/", views_api.api_ranking, name="api_ranking"),
    path("api/anomalies/galaxies/<int:galaxy_id>/", views_api.api_galaxy_scores, name="api_galaxy_scores"),
]
