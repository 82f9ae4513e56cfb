from django.urls import path

from webapp.labeling import views, views_import

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
    path("tasks/<int:task_id>/import-labels", views_import.import_labels, name="import_labels"),
]
