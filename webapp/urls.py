from importlib import import_module

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp import openapi, views
from webapp.api import APP_ROUTERS, app_urls


def pages_and_api(app: str):
    """An app's page URLs and its JSON API routes under one namespace ("labeling:api_queue").

    Composed here, at the top, because webapp.api imports every app's router: an app's own
    urls.py importing it would break the layering (tests/deploy/test_layers.py).
    """
    urlconf = import_module(f"webapp.{app}.urls")
    api = [pattern for router in APP_ROUTERS[app] for pattern in app_urls(router)]
    return include((urlconf.urlpatterns + api, urlconf.app_name))


urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/openapi.json", openapi.openapi_view, name="openapi"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("webapp.accounts.urls")),
    path("admin/", admin.site.urls),
    path("", pages_and_api("catalog")),
    path("", pages_and_api("jobs")),
    path("", pages_and_api("embeddings")),
    path("", pages_and_api("anomalies")),
    path("", pages_and_api("labeling")),
    path("", include("webapp.interop.urls")),  # SAMP links and HiPS overlay (issue 18)
]
handler403 = "webapp.views.forbidden"
handler500 = "webapp.views.server_error"
