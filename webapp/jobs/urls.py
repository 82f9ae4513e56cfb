from django.urls import path

from webapp.api import app_urls
from webapp.jobs import views
from webapp.jobs.api import router as api_router

app_name = "jobs"
urlpatterns = [
    path("jobs/", views.job_list, name="list"),
    path("jobs/<int:job_id>/", views.job_detail, name="detail"),
    path("jobs/<int:job_id>/cancel", views.job_cancel, name="cancel"),
    *app_urls(api_router),
]
