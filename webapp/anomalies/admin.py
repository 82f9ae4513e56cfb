from django.contrib import admin

from webapp.anomalies.models import PersonalRanking, Review, ScoreSet


@admin.register(ScoreSet)
class ScoreSetAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "embedding_set", "n", "status", "seconds", "created_at")
    list_filter = ("status",)
    readonly_fields = ("scores_path", "checksum", "n", "seconds", "job", "created_at")


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Append-only: the admin shows history but cannot edit or delete a verdict."""
    list_display = ("galaxy", "user", "kind", "interest", "score_set", "created_at")
    list_filter = ("kind", "interest")
    raw_id_fields = ("galaxy",)
    readonly_fields = ("user", "galaxy", "score_set", "kind", "interest", "created_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PersonalRanking)
class PersonalRankingAdmin(admin.ModelAdmin):
    list_display = ("user", "score_set", "n_reviews", "status", "seconds", "created_at")
    list_filter = ("status",)
