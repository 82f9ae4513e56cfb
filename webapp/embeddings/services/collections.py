"""Collections: named sets of galaxies saved per user (from a map lasso, a search, a grid).

Each user sees and edits only their own collections.  Adding is idempotent (a galaxy is
in a collection once), unknown galaxy ids are refused as a whole with the first few named,
so a request either fully applies or changes nothing.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction

from webapp.catalog.models import Galaxy
from webapp.embeddings.models import Collection

MAX_NAME = 120
MAX_BATCH = 10_000  # galaxies per add/remove request


class CollectionError(ValueError):
    """Bad collection request (HTTP 400)."""


def clean_name(name) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise CollectionError("give the collection a name")
    if len(name) > MAX_NAME:
        raise CollectionError(f"collection names are at most {MAX_NAME} characters")
    return name


def clean_ids(galaxy_ids) -> list[int]:
    if isinstance(galaxy_ids, str):
        galaxy_ids = [g for g in galaxy_ids.replace(" ", "").split(",") if g]
    if not isinstance(galaxy_ids, (list, tuple)):
        raise CollectionError("galaxy_ids must be a list of galaxy ids")
    try:
        ids = list(dict.fromkeys(int(g) for g in galaxy_ids))
    except (TypeError, ValueError):
        raise CollectionError("galaxy_ids must be integers") from None
    if not ids:
        raise CollectionError("select at least one galaxy")
    if any(not 0 < g < 2**63 for g in ids):  # database integers are 64-bit
        raise CollectionError("galaxy ids are positive 64-bit integers")
    if len(ids) > MAX_BATCH:
        raise CollectionError(f"at most {MAX_BATCH:,} galaxies per request, got {len(ids):,}")
    found = set(Galaxy.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [g for g in ids if g not in found]
    if missing:
        raise CollectionError(f"unknown galaxy id(s): {', '.join(map(str, missing[:5]))}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return ids


def add_to_collection(user, galaxy_ids, name: str | None = None, collection: Collection | None = None
                      ) -> tuple[Collection, int, bool]:
    """Add galaxies to the user's collection (by object, or by name, created when new).

    Returns (collection, number newly added, created?).
    """
    if collection is None:
        name = clean_name(name)
    ids = clean_ids(galaxy_ids)
    with transaction.atomic():
        created = False
        if collection is None:
            try:
                with transaction.atomic():
                    collection, created = Collection.objects.get_or_create(owner=user, name=name)
            except IntegrityError:  # a concurrent request created it first
                collection = Collection.objects.get(owner=user, name=name)
        through = Collection.galaxies.through
        already = set(through.objects.filter(collection_id=collection.pk, galaxy_id__in=ids)
                      .values_list("galaxy_id", flat=True))
        new = [g for g in ids if g not in already]
        through.objects.bulk_create([through(collection_id=collection.pk, galaxy_id=g) for g in new],
                                    ignore_conflicts=True)
    return collection, len(new), created


def remove_from_collection(collection: Collection, galaxy_ids) -> int:
    ids = clean_ids(galaxy_ids)
    deleted, _ = Collection.galaxies.through.objects.filter(collection_id=collection.pk, galaxy_id__in=ids).delete()
    return deleted


def rename_collection(collection: Collection, name: str) -> Collection:
    name = clean_name(name)
    if Collection.objects.filter(owner_id=collection.owner_id, name=name).exclude(pk=collection.pk).exists():
        raise CollectionError(f"you already have a collection called {name!r}")
    collection.name = name
    collection.save(update_fields=["name"])
    return collection


def collection_dict(collection: Collection, count: int | None = None) -> dict:
    return {"id": collection.pk, "name": collection.name, "description": collection.description,
            "count": count if count is not None else collection.galaxies.count(),
            "created_at": collection.created_at.isoformat(), "url": f"/collections/{collection.pk}/"}
