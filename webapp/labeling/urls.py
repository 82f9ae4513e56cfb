from django.urls import path

from webapp.labeling import views, views_api

app_name = "labeling"
urlpatterns = [
    path("tasks/", views.task_list, name="task_list"),
    path("tasks/new/", views.task_new, name="task_new"),
    path("tasks/<int:task_id>/", views.task_detail, name="task_detail"),
    path("tasks/<int:task_id>/edit/", views.task_edit, name="task_edit"),
    path("tasks/<int:task_id>/label/", views.label_page, name="label"),
    path("tasks/<int:task_id>/rounds", views.round_start, name="round_start"),
    path("tasks/<int:task_id>/finetune", views.finetune_start, name="finetune_start"),
    path("tasks/<int:task_id>/export", views.task_export, name="export"),
    path("api/tasks/", views_api.api_task_list, name="api_task_list"),
    path("api/tasks/<int:task_id>/", views_api.api_task_detail, name="api_task_detail"),
    path("api/tasks/<int:task_id>/enqueue", views_api.api_enqueue, name="api_enqueue"),
    path("api/tasks/<int:task_id>/queue", views_api.api_queue, name="api_queue"),
    path("api/tasks/<int:task_id>/labels", views_api.api_label, name="api_label"),
    path("api/tasks/<int:task_id>/labels/history", views_api.api_labels, name="api_labels"),
    path("api/tasks/<int:task_id>/undo", views_api.api_undo, name="api_undo"),
    path("api/tasks/<int:task_id>/rounds", views_api.api_rounds, name="api_rounds"),
    path("api/tasks/<int:task_id>/finetune", views_api.api_finetune, name="api_finetune"),
    path("api/tasks/<int:task_id>/catalogue", views_api.api_catalogue, name="api_catalogue"),
]
