from django.urls import path

from webapp.labeling import views, views_api

app_name = "labeling"
urlpatterns = [
    path("tasks/", views.task_list, name="task_list"),
    path("api/tasks/", views_api.api_task_list, name="api_task_list"),
    path("api/tasks/<int:task_id>/enqueue", views_api.api_enqueue, name="api_enqueue"),
]
