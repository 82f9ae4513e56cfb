"""Collections JSON API: my and shared collections, one collection, add (or create), remove,
delete, share.

A collection is visible to its owner and to those it is shared with (a group, or everyone);
anyone else gets 404, as if it did not exist.  A read-only shared collection answers 403 to
add and remove; delete and share are the owner's (services/collections.py).  Writes need the
viewer role (every signed-in person with a role).
"""
from __future__ import annotations

from django.db.models import Count
from typing import Literal

from ninja import Field, Router, Schema, Status

from webapp.apikit import Error, Out, role
from webapp.embeddings.models import Collection
from webapp.embeddings.services import collections as svc

router = Router()
IDS = "galaxy ids: a list, or a comma-separated string"


class CollectionOut(Out):
    id: int
    name: str
    count: int | None = None
    url: str | None = None
    owner: str | None = None
    shared_with: str | None = None
    group: str | None = None
    editable: bool | None = None


class CollectionList(Out):
    collections: list[CollectionOut]


class CollectionDetail(CollectionOut):
    galaxy_ids: list[int]


class AddIn(Schema):
    name: str | None = Field(None, description="my collection of this name (created when new)")
    galaxy_ids: list[int | str] | str | None = Field(None, description=IDS)


class IdsIn(Schema):
    galaxy_ids: list[int | str] | str | None = Field(None, description=IDS)


class Added(Out):
    collection: CollectionOut
    added: int
    created: bool


class Removed(Out):
    collection: CollectionOut
    removed: int


class Deleted(Out):
    deleted: int


class ShareIn(Schema):
    shared_with: Literal["none", "group", "everyone"] = Field(description="who else sees the collection")
    group: str | None = Field(None, max_length=150, description="the group's name (a group you are in)")
    editable: bool = Field(False, description="those it is shared with may also add, remove and rename")


def _add(request, collection, body):
    collection, added, created = svc.add_to_collection(request.user, body.galaxy_ids,
                                                       name=getattr(body, "name", None), collection=collection)
    return Status(201 if created else 200, {"collection": svc.collection_dict(collection), "added": added,
                                           "created": created})


@router.get("/collections/", response=CollectionList, url_name="collection_api_list",
            summary="My collections and those shared with me (each with its owner)")
def api_collections(request):
    seen = svc.visible_collections(request.user).annotate(count=Count("galaxies")).order_by("name", "id")
    return {"collections": [svc.collection_dict(c, c.count, request.user) for c in seen]}


@router.post("/collections/", response={200: Added, 201: Added, 400: Error, 403: Error}, auth=role("viewer"),
             summary="Add galaxies to my collection of this name (created when new)")
def api_collection_create(request, body: AddIn):
    return _add(request, None, body)


@router.get("/collections/{int:collection_id}/", response={200: CollectionDetail, 404: Error},
            url_name="collection_api_detail", summary="One collection I can see, with its galaxy ids")
def api_collection_detail(request, collection_id: int):
    collection = svc.visible_collection(request.user, collection_id)
    ids = list(Collection.galaxies.through.objects.filter(collection_id=collection.pk)
               .order_by("id").values_list("galaxy_id", flat=True))
    return {**svc.collection_dict(collection, len(ids), request.user), "galaxy_ids": ids}


@router.post("/collections/{int:collection_id}/add", response={200: Added, 400: Error, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_add",
             summary="Add galaxies to a collection I may edit")
def api_collection_add(request, collection_id: int, body: IdsIn):
    return _add(request, svc.editable_collection(request.user, collection_id), body)


@router.post("/collections/{int:collection_id}/remove", response={200: Removed, 400: Error, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_remove",
             summary="Remove galaxies from a collection I may edit")
def api_collection_remove(request, collection_id: int, body: IdsIn):
    collection = svc.editable_collection(request.user, collection_id)
    removed = svc.remove_from_collection(collection, body.galaxy_ids)
    return {"collection": svc.collection_dict(collection), "removed": removed}


@router.post("/collections/{int:collection_id}/delete", response={200: Deleted, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_delete",
             summary="Delete my collection (the galaxies stay in the catalogue)")
def api_collection_delete(request, collection_id: int):
    svc.owned_collection(request.user, collection_id).delete()
    return {"deleted": collection_id}


@router.post("/collections/{int:collection_id}/share", response={200: CollectionOut, 400: Error, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_share",
             summary="Share my collection with a group or everyone, read-only or editable (or stop sharing)")
def api_collection_share(request, collection_id: int, body: ShareIn):
    collection = svc.share_collection(svc.owned_collection(request.user, collection_id), body.shared_with,
                                      body.group, body.editable)
    return svc.collection_dict(collection, user=request.user)
