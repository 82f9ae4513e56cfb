from django.urls import path

from webapp.jobs import views

app_name = "jobs"
urlpatterns = [
    path("jobs/", views.job_list, name="list"),
    path("jobs/<int:job_id>/", views.job_detail, name="detail"),
    path("jobs/<int:job_id>/cancel", views.job_cancel, name="cancel"),
]
