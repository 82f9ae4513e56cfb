from django.contrib import admin

from webapp.embeddings.models import Collection, EmbeddingSet, Encoder, LatentMap


@admin.register(Encoder)
class EncoderAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "method", "source", "status", "epochs_done", "training_seconds", "created_at")
    list_filter = ("status", "method", "source")
    readonly_fields = ("config", "metrics", "checkpoint_path", "created_at")


@admin.register(EmbeddingSet)
class EmbeddingSetAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "encoder", "n", "dim", "status", "index_kind", "index_status", "created_at")
    list_filter = ("status",)
    readonly_fields = ("checksum", "vectors_path", "ids_path", "index_path", "created_at")


@admin.register(LatentMap)
class LatentMapAdmin(admin.ModelAdmin):
    list_display = ("id", "embedding_set", "n", "status", "seconds", "created_at")
    readonly_fields = ("checksum", "coords_path", "params", "created_at")


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "created_at")
    search_fields = ("name",)
    raw_id_fields = ("galaxies",)
