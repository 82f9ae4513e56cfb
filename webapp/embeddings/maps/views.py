"""Latent map and sky view pages and the curator's map/index actions (JSON/binary API: api.py).

The page ships empty bokeh figures (plots.py) plus a JSON description of the map;
static/js/map.js then fetches points (binary), density images and mosaics for the view.
"""
from __future__ import annotations

from bokeh.palettes import Category10_10, Category20_20, Viridis256
from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.accounts.roles import has_role, role_required
from webapp.context_processors import url_template
from webapp.embeddings.maps import plots
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, LatentMap
from webapp.embeddings.services import map_data, map_tiles
from webapp.embeddings.services.collections import visible_collections
from webapp.embeddings.services.search import index_description
from webapp.embeddings.services.sky import sky_index
from webapp.embeddings.services.hips import hips_for_set
from webapp.jobs.models import Job

# Distinct colours for categorical layers (Category10 then the light half of Category20).
CATEGORICAL = list(Category10_10) + list(Category20_20[1::2])
IMAGE_CACHE = "private, max-age=3600"  # density/mosaic URLs carry the map checksum: safe to cache


def _ready_map(map_id) -> LatentMap:
    lm = get_object_or_404(LatentMap.objects.select_related("embedding_set__encoder"), pk=map_id)
    if lm.status != ArtifactStatus.READY:
        raise Http404(f"map {lm.pk} is {lm.status}, not ready")
    return lm


def _bad(exc) -> JsonResponse:
    return JsonResponse({"error": str(exc)}, status=400)


# ----------------------------------------------------------------- pages

def map_home(request):
    """Every embedding set with its maps, index and running jobs; curators launch jobs here."""
    sets = list(EmbeddingSet.objects.select_related("encoder").prefetch_related(
        "surveys", Prefetch("maps", queryset=LatentMap.objects.order_by("-created_at", "-id"))
    ).order_by("-created_at", "-id")[:100])
    active = Job.objects.filter(kind__in=["umap", "build_index"], status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
    running: dict[int, list] = {}
    for job in active.order_by("id"):
        running.setdefault(int(job.params.get("embedding_set_id") or 0), []).append(job)
    rows = [{"es": es, "maps": list(es.maps.all())[:5], "jobs": running.get(es.pk, []),
             "index": index_description(es), "surveys": list(es.surveys.all())} for es in sets]
    return render(request, "embeddings/map_home.html", {"rows": rows, "can_launch": has_role(request.user, "curator")})


def map_detail(request, map_id, view=None):
    lm = _ready_map(map_id)
    view = view or request.GET.get("view", "map")
    if view not in ("map", "sky", "both"):
        view = "map"
    meta = map_meta(request, lm)
    if not meta["sky_bounds"]:
        view = "map"
    # Sky imagery (static/js/sky_imagery.js): the survey's HiPS under the points, via Aladin Lite.
    meta["hips"] = hips_for_set(lm.embedding_set) if meta["sky_bounds"] else None
    meta["urls"]["hips_overlay"] = reverse("interop:sky_overlay", args=[lm.pk])
    response = render(request, "embeddings/map.html", {
        "lm": lm, "es": lm.embedding_set, "meta": meta,
        "bokeh_item": plots.map_figures(meta["bounds"], meta["sky_bounds"]), "view": view,
        "other_maps": lm.embedding_set.maps.filter(status=ArtifactStatus.READY).exclude(pk=lm.pk)[:10]})
    if meta["hips"]:  # Aladin Lite's WebAssembly and the HiPS servers, on this page only (settings.py)
        response._csp_update = settings.SKY_IMAGERY_CSP
    return response


def sky_view(request, map_id):
    """The sky view of a map's galaxies (the same page, sky panel first)."""
    return map_detail(request, map_id, view="sky")


def palettes() -> dict:
    return {"numeric": list(Viridis256), "categorical": CATEGORICAL, "missing": plots.MISSING}


def _tiles_meta(lm: LatentMap) -> dict | None:
    """What the page needs to draw a tiled map (None when the map is small); bounds from the manifest."""
    if not map_tiles.tiled(lm):
        return None
    info = map_tiles.tiles_info(lm)
    if not info:
        from webapp.jobs.models import Job
        job = Job.objects.filter(kind="map_tiles", params__latent_map_id=lm.pk).order_by("-id").first()
        return {"ready": False, "job": job.pk if job else None, "job_status": job.status if job else None}
    manifest = map_tiles.reader(lm).manifest
    base = reverse("embeddings:map_api_tile", args=[lm.pk, info["version"], "K", 0, 0, 0]).rsplit("/K/", 1)[0]
    return {"ready": True, "version": info["version"], "box": manifest["box"], "tile_size": manifest["tile_size"],
            "density_levels": manifest["density_levels"], "point_levels": manifest["point_levels"],
            "points_per_tile": manifest["config"]["points_per_tile"], "url": base,
            "layers": [m["key"] for m in manifest["layers"]], "bounds": manifest["bounds"],
            "sky_bounds": manifest.get("sky_bounds")}


def map_meta(request, lm: LatentMap) -> dict:
    es = lm.embedding_set
    tiles = _tiles_meta(lm)
    if tiles is not None:  # above the threshold: nothing here reads the N rows
        bounds = tiles.get("bounds") or [-10.0, -10.0, 10.0, 10.0]
        sky_bounds = tiles.get("sky_bounds")
    else:
        bounds = map_data.map_bounds(lm)
        sky = sky_index(es)
        sky_bounds = None
        if len(sky.rows):
            ra, dec = sky.ra[sky.rows], sky.dec[sky.rows]
            sky_bounds = [float(ra.min()), float(dec.min()), float(ra.max()), float(dec.max())]
    menu = map_data.layer_menu(es)
    focus = _id_param(request.GET.get("focus"))
    collection_ids: list[int] = []
    collection_id = _id_param(request.GET.get("collection"))
    if collection_id:
        c = visible_collections(request.user).filter(pk=collection_id).first()  # own or shared
        if c is not None:
            collection_ids = list(c.galaxies.values_list("id", flat=True)[:map_data.MAX_LIMIT])
    return {
        "map_id": lm.pk, "set_id": es.pk, "n": lm.n, "checksum": lm.checksum[:12],
        "bounds": bounds, "sky_bounds": sky_bounds, "tiles": tiles,
        "budget": map_data.POINT_BUDGET, "view_limit": map_data.VIEW_LIMIT,
        "dense": tiles is not None or lm.n > map_data.POINT_BUDGET,
        "layers": menu, "default_layer": default_layer(es, menu),
        "focus": focus, "collection_ids": collection_ids,
        "can_label": has_role(request.user, "labeler"),
        "palettes": palettes(),
        "urls": {"points": reverse("embeddings:map_api_points", args=[lm.pk]),
                 "density": reverse("embeddings:map_api_density", args=[lm.pk]),
                 "mosaic": reverse("embeddings:map_api_mosaic", args=[lm.pk]),
                 "layers": reverse("embeddings:map_api_layers", args=[lm.pk]),
                 "neighbours": url_template("embeddings:search_api_neighbours", True),
                 "galaxies": reverse("embeddings:search_api_galaxies"),
                 "collections": reverse("embeddings:collection_api_list"),
                 "search": reverse("embeddings:search_home"),
                 "tasks": reverse("labeling:api_task_list")},
    }


def _id_param(value) -> int | None:
    """A database id from a query parameter, or None for anything else (ignored, not an error)."""
    return int(value) if value and str(value).isdigit() and 0 < int(value) < 2**63 else None


def default_layer(es, menu: list[dict]) -> str:
    keys = [m["key"] for m in menu]
    # Survey comes with the cached positions; a catalogue column costs a pass over every
    # galaxy's metadata (seconds at 1e6), so large maps open coloured by survey.
    if (es.n > map_data.POINT_BUDGET or es.surveys.count() > 1) and "survey" in keys:
        return "survey"
    for m in menu:  # a catalogue class/label column is the most telling default
        if m["key"].startswith("meta:") and m["kind"] == "categorical" and any(
                w in m["key"].lower() for w in ("label", "class", "type")):
            return m["key"]
    return "survey" if "survey" in keys else (keys[0] if keys else "")


@require_POST
@role_required("curator")
def map_launch(request):
    return _launch(request, "umap", "Compute UMAP map")


@require_POST
@role_required("curator")
def map_build_index(request):
    return _launch(request, "build_index", "Build search index")


def _launch(request, kind: str, label: str):
    from webapp.jobs.services import create_job

    es = get_object_or_404(EmbeddingSet, pk=request.POST.get("embedding_set_id") or 0)
    if es.status != ArtifactStatus.READY:
        messages.error(request, f"Embedding set {es.pk} is {es.status}; it must be ready first.")
        return redirect("embeddings:map_home")
    job = create_job(kind, {"embedding_set_id": es.pk}, user=request.user, title=f"{label}: {es}")
    messages.info(request, f"{label} for {es} queued (job {job.pk}); progress shows below.")
    return redirect("embeddings:map_home")
