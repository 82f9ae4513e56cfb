from django.contrib import admin

from webapp.anomalies.models import AnomalyScore, PersonalRanking, Review, ScoreSet


@admin.register(ScoreSet)
class ScoreSetAdmin(admin.ModelAdmin):
    list_display = ("id", "embedding_set", "status", "created_at")


@admin.register(AnomalyScore)
class AnomalyScoreAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "score_set", "combined")
    raw_id_fields = ("galaxy",)
    list_select_related = ("galaxy",)


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("galaxy", "user", "kind", "interest", "created_at")
    list_filter = ("kind", "interest")
    raw_id_fields = ("galaxy",)


@admin.register(PersonalRanking)
class PersonalRankingAdmin(admin.ModelAdmin):
    list_display = ("user", "score_set", "n_reviews", "status", "created_at")
