"""Collections: named sets of galaxies saved per user (from a map lasso, a search, a grid).

A collection is its owner's; the owner may share it with one group (a team) or with everyone,
read-only (they may view and export it) or editable (they may also add, remove and rename).
Only the owner deletes it or changes its sharing.  A collection you cannot see is a 404, one
you see but may not change is a PermissionDenied (403).  Adding is idempotent (a galaxy is
in a collection once), unknown galaxy ids are refused as a whole with the first few named,
so a request either fully applies or changes nothing.
"""
from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404

from webapp.catalog.models import Galaxy
from webapp.embeddings.models import Collection

MAX_NAME = 120
MAX_BATCH = 10_000  # galaxies per add/remove request


class CollectionError(ValueError):
    """Bad collection request (HTTP 400)."""


def visible_collections(user) -> QuerySet:
    """The user's own collections and those shared with them (a group of theirs, or everyone)."""
    shared = Q(shared_with=Collection.Sharing.EVERYONE) | Q(
        shared_with=Collection.Sharing.GROUP, group__in=user.groups.all())
    return Collection.objects.filter(Q(owner=user) | shared).select_related("owner", "group")


def visible_collection(user, collection_id) -> Collection:
    """One collection the user may see (Http404 otherwise, as if it did not exist)."""
    collection = visible_collections(user).filter(pk=collection_id).first()
    if collection is None:
        raise Http404("no such collection")
    return collection


def can_edit(user, collection: Collection) -> bool:
    return collection.owner_id == user.pk or collection.editable


def editable_collection(user, collection_id) -> Collection:
    """One collection the user may add to, remove from and rename (404 unseen, 403 read-only)."""
    collection = visible_collection(user, collection_id)
    if not can_edit(user, collection):
        raise PermissionDenied(f"{collection.owner.username} shares this collection read-only")
    return collection


def owned_collection(user, collection_id) -> Collection:
    """One of the user's own collections (delete, sharing): 404 unseen, 403 someone else's."""
    collection = visible_collection(user, collection_id)
    if collection.owner_id != user.pk:
        raise PermissionDenied(f"only its owner, {collection.owner.username}, may do this")
    return collection


def share_collection(collection: Collection, shared_with: str, group: str | int | None = None,
                     editable: bool = False) -> Collection:
    """Set who else sees the collection: "none", "group" (a group its owner is in) or "everyone"."""
    if shared_with not in Collection.Sharing.values:
        raise CollectionError(f"shared_with must be one of {', '.join(Collection.Sharing.values)}")
    found = None
    if shared_with == Collection.Sharing.GROUP:
        if group in (None, ""):
            raise CollectionError("name the group to share with")
        groups = Group.objects.all() if collection.owner.is_superuser else collection.owner.groups.all()
        key = {"pk": int(group)} if str(group).isdigit() else {"name": str(group)}
        found = groups.filter(**key).first()
        if found is None:
            raise CollectionError(f"you are not in a group {group!r}")
    collection.shared_with, collection.group = shared_with, found
    collection.editable = bool(editable) and shared_with != Collection.Sharing.NONE
    collection.save(update_fields=["shared_with", "group", "editable"])
    return collection


def sharing_text(collection: Collection) -> str:
    """'only me', 'group labeler (read-only)', 'everyone (editable)'."""
    if collection.shared_with == Collection.Sharing.NONE:
        return "only me"
    who = "everyone" if collection.shared_with == Collection.Sharing.EVERYONE else \
        f"group {collection.group.name if collection.group else '?'}"
    return f"{who} ({'editable' if collection.editable else 'read-only'})"


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


def collection_dict(collection: Collection, count: int | None = None, user=None) -> dict:
    out = {"id": collection.pk, "name": collection.name, "description": collection.description,
           "count": count if count is not None else collection.galaxies.count(),
           "created_at": collection.created_at.isoformat(), "url": f"/collections/{collection.pk}/",
           "owner": collection.owner.username, "shared_with": collection.shared_with,
           "group": collection.group.name if collection.group_id else None, "editable": collection.editable}
    if user is not None:
        out["mine"] = collection.owner_id == user.pk
        out["can_edit"] = can_edit(user, collection)
    return out
