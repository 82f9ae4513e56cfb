from django.contrib import admin

from webapp.labeling.models import Label, QueueItem, Round, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "strategy", "batch_size", "round_every", "created_at")
    filter_horizontal = ("surveys",)


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("task", "galaxy", "user", "kind", "class_index", "value", "created_at")
    list_filter = ("task", "kind")
    raw_id_fields = ("galaxy",)


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("task", "number", "status", "trigger", "n_labels", "model_version", "created_at")
    list_filter = ("task", "status")


@admin.register(QueueItem)
class QueueItemAdmin(admin.ModelAdmin):
    list_display = ("task", "galaxy", "rank", "source", "strategy", "done", "leased_by", "leased_until")
    list_filter = ("task", "source", "done")
    raw_id_fields = ("galaxy",)
