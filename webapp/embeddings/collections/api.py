"""Collections JSON API: my collections, one collection, add (or create), remove, delete.

A collection is visible and editable only by its owner; anyone else gets 404, as if it did not
exist.  Writes need the viewer role (every signed-in person with a role).
"""
from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404
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


def _mine(request, collection_id) -> Collection:
    return get_object_or_404(Collection, pk=collection_id, owner=request.user)


def _add(request, collection, body):
    collection, added, created = svc.add_to_collection(request.user, body.galaxy_ids,
                                                       name=getattr(body, "name", None), collection=collection)
    return Status(201 if created else 200, {"collection": svc.collection_dict(collection), "added": added,
                                           "created": created})


@router.get("/collections/", response=CollectionList, url_name="collection_api_list", summary="My collections")
def api_collections(request):
    mine = Collection.objects.filter(owner=request.user).annotate(count=Count("galaxies")).order_by("name")
    return {"collections": [svc.collection_dict(c, c.count) for c in mine]}


@router.post("/collections/", response={200: Added, 201: Added, 400: Error, 403: Error}, auth=role("viewer"),
             summary="Add galaxies to my collection of this name (created when new)")
def api_collection_create(request, body: AddIn):
    return _add(request, None, body)


@router.get("/collections/{int:collection_id}/", response={200: CollectionDetail, 404: Error},
            url_name="collection_api_detail", summary="One of my collections with its galaxy ids")
def api_collection_detail(request, collection_id: int):
    collection = _mine(request, collection_id)
    ids = list(Collection.galaxies.through.objects.filter(collection_id=collection.pk)
               .order_by("id").values_list("galaxy_id", flat=True))
    return {**svc.collection_dict(collection, len(ids)), "galaxy_ids": ids}


@router.post("/collections/{int:collection_id}/add", response={200: Added, 400: Error, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_add", summary="Add galaxies to my collection")
def api_collection_add(request, collection_id: int, body: IdsIn):
    return _add(request, _mine(request, collection_id), body)


@router.post("/collections/{int:collection_id}/remove", response={200: Removed, 400: Error, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_remove", summary="Remove galaxies from my collection")
def api_collection_remove(request, collection_id: int, body: IdsIn):
    collection = _mine(request, collection_id)
    removed = svc.remove_from_collection(collection, body.galaxy_ids)
    return {"collection": svc.collection_dict(collection), "removed": removed}


@router.post("/collections/{int:collection_id}/delete", response={200: Deleted, 403: Error, 404: Error},
             auth=role("viewer"), url_name="collection_api_delete",
             summary="Delete my collection (the galaxies stay in the catalogue)")
def api_collection_delete(request, collection_id: int):
    _mine(request, collection_id).delete()
    return {"deleted": collection_id}
