"""Collections pages (services/collections.py does the work; the JSON API is api.py).

Writes need the viewer role (every signed-in person with a role).  A collection is visible to
its owner and to those it is shared with; anyone else gets 404, as if it did not exist.  Shared
read-only: view and export; shared editable: also remove and rename; delete and sharing are the
owner's (services/collections.py enforces it, 403 otherwise).
"""
from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.roles import role_required
from webapp.catalog.models import Galaxy
from webapp.catalog.services import atlas, static_thumbs
from webapp.catalog.services.browse import thumb_url
from webapp.embeddings.models import Collection
from webapp.embeddings.services import collections as svc

PER_PAGE = 200
COLLECTION_THUMB = 96   # px of a cell, drawn from the page's sprite atlas
PREVIEW = 8


# ----------------------------------------------------------------- pages

def collection_list(request):
    mine = list(svc.visible_collections(request.user).annotate(count=Count("galaxies")).order_by("name", "id"))
    through = Collection.galaxies.through
    previews: dict[int, list] = {c.pk: [] for c in mine}
    for c in mine:  # a few thumbnails each; collections are few per person
        ids = list(through.objects.filter(collection_id=c.pk).order_by("id").values_list("galaxy_id", flat=True)[:PREVIEW])
        for g in Galaxy.objects.filter(pk__in=ids).select_related("survey").only(
                *static_thumbs.GALAXY_FIELDS, *static_thumbs.SURVEY_ONLY):
            previews[c.pk].append({"url": f"/galaxies/{g.pk}/", "thumb": thumb_url(g, g.survey, size=72),
                                   "source_id": g.source_id})
    rows = [{"c": c, "previews": previews[c.pk], "mine": c.owner_id == request.user.pk,
             "sharing": svc.sharing_text(c)} for c in mine]
    return render(request, "embeddings/collection_list.html", {"rows": rows})


def collection_detail(request, collection_id):
    collection = svc.visible_collection(request.user, collection_id)
    galaxies = (Galaxy.objects.filter(collections=collection).select_related("survey")
                .only(*static_thumbs.GALAXY_FIELDS, "survey__name", "survey__slug", *static_thumbs.SURVEY_ONLY)
                .order_by("survey_id", "image_index"))
    page = Paginator(galaxies, PER_PAGE).get_page(request.GET.get("page"))
    cells = [{"g": g} for g in page.object_list]
    # One sprite atlas for the page (PER_PAGE <= atlas.MAX_MEMBERS) instead of a request per cell.
    sprites = atlas.layout([(g, g.survey) for g in page.object_list], COLLECTION_THUMB)
    for cell, position in zip(cells, sprites.positions if sprites else []):
        cell["sprite"] = position
    all_ids = list(Collection.galaxies.through.objects.filter(collection_id=collection.pk)
                   .order_by("id").values_list("galaxy_id", flat=True)[:500])
    return render(request, "embeddings/collection_detail.html", {
        "collection": collection, "page": page, "cells": cells, "atlas": sprites, "count": page.paginator.count,
        "similar_ids": ",".join(map(str, all_ids)), "map": _map_for(all_ids),
        "mine": collection.owner_id == request.user.pk, "can_edit": svc.can_edit(request.user, collection),
        "sharing": svc.sharing_text(collection), "groups": _share_groups(request.user)})


def _share_groups(user) -> list[str]:
    groups = Group.objects.all() if user.is_superuser else user.groups.all()
    return list(groups.order_by("name").values_list("name", flat=True))


def _map_for(galaxy_ids):
    """The newest ready map of a set that contains the collection's first galaxy (or None)."""
    from webapp.embeddings.services.maps import latest_map
    from webapp.embeddings.services.search import latest_set_for
    es = latest_set_for(galaxy_ids[0]) if galaxy_ids else None
    return latest_map(es) if es else None


@require_POST
@role_required("viewer")
def collection_remove(request, collection_id):
    collection = svc.editable_collection(request.user, collection_id)
    try:
        n = svc.remove_from_collection(collection, request.POST.getlist("galaxy_ids"))
        messages.success(request, f"Removed {n} galaxies from {collection.name}.")
    except svc.CollectionError as exc:
        messages.error(request, str(exc))
    return redirect("embeddings:collection_detail", collection_id=collection.pk)


@require_POST
@role_required("viewer")
def collection_rename(request, collection_id):
    collection = svc.editable_collection(request.user, collection_id)
    try:
        svc.rename_collection(collection, request.POST.get("name"))
        messages.success(request, f"Renamed to {collection.name}.")
    except svc.CollectionError as exc:
        messages.error(request, str(exc))
    return redirect("embeddings:collection_detail", collection_id=collection.pk)


@require_POST
@role_required("viewer")
def collection_delete(request, collection_id):
    collection = svc.owned_collection(request.user, collection_id)
    name = collection.name
    collection.delete()
    messages.success(request, f"Deleted collection {name}.")
    return redirect("embeddings:collection_list")


@require_POST
@role_required("viewer")
def collection_share(request, collection_id):
    collection = svc.owned_collection(request.user, collection_id)
    try:
        svc.share_collection(collection, request.POST.get("shared_with", ""), request.POST.get("group"),
                             request.POST.get("editable") == "on")
        messages.success(request, f"{collection.name} is now shared with {svc.sharing_text(collection)}.")
    except svc.CollectionError as exc:
        messages.error(request, str(exc))
    return redirect("embeddings:collection_detail", collection_id=collection.pk)


@require_GET
def collection_export(request, collection_id):
    collection = svc.visible_collection(request.user, collection_id)
    response = HttpResponse(content_type="text/csv")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in collection.name)[:60]
    response["Content-Disposition"] = f'attachment; filename="collection-{safe}.csv"'
    writer = csv.writer(response)
    writer.writerow(["galaxy_id", "survey", "source_id", "ra", "dec"])
    for g in (Galaxy.objects.filter(collections=collection).select_related("survey")
              .only("id", "source_id", "ra", "dec", "survey__slug").order_by("survey_id", "image_index").iterator()):
        writer.writerow([g.pk, g.survey.slug, g.source_id, g.ra, g.dec])
    return response
