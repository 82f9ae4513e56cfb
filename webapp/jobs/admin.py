from django.contrib import admin

from webapp.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "attempts", "queue", "launched_by", "created_at")
    list_filter = ("status", "kind", "queue")
    search_fields = ("title", "message", "error")
    readonly_fields = ("created_at", "started_at", "heartbeat_at", "finished_at")
