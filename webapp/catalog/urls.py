from django.urls import path

from webapp.catalog import views, views_ingest

app_name = "catalog"
urlpatterns = [
    path("surveys/", views.survey_list, name="survey_list"),
    path("galaxies/<int:galaxy_id>/", views.galaxy_detail, name="galaxy_detail"),
    path("thumbs/<int:galaxy_id>.png", views.thumbnail, name="thumbnail"),   # revalidated; hover, links
    path("thumbs/<int:galaxy_id>/<str:key>.png", views.thumbnail_immutable, name="thumbnail_immutable"),
    path("thumbs/atlas/<str:digest>.jpg", views.thumbnail_atlas, name="thumbnail_atlas"),
    path("ingest/", views_ingest.ingest_new, name="ingest"),
]
# Keep these last: "surveys/<slug>/" would otherwise shadow fixed paths such as "surveys/ingest/".
urlpatterns += [
    path("surveys/<slug:slug>/", views.survey_grid, name="survey_grid"),
    path("surveys/<slug:slug>/prerender", views.survey_prerender, name="survey_prerender"),
    path("surveys/<slug:slug>/cutouts", views.survey_cutout_source, name="survey_cutout_source"),
]
