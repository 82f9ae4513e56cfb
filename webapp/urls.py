from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp import openapi, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/openapi.json", openapi.openapi_view, name="openapi"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("webapp.catalog.urls")),
    path("", include("webapp.jobs.urls")),
    path("", include("webapp.embeddings.urls")),
    path("", include("webapp.anomalies.urls")),
    path("", include("webapp.labeling.urls")),
]
handler403 = "webapp.views.forbidden"
handler500 = "webapp.views.server_error"
