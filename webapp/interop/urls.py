from django.urls import path

from webapp.interop import views

app_name = "interop"
urlpatterns = [
    path("samp/link", views.samp_link, name="samp_link"),
    path("samp/rows", views.samp_rows, name="samp_rows"),
    # Open without login (webapp/accounts/middleware.py OPEN_PREFIXES): the signed token is the key.
    path("samp/t/<str:token>/<str:filename>", views.samp_table, name="samp_table"),
    path("maps/<int:map_id>/hips.json", views.sky_overlay, name="sky_overlay"),
]
