"""Similarity search pages (the JSON API is api.py): by galaxy, by RA/Dec, by uploaded image, "more like these".

Views read the request, call services/queries.py (which checks the query and calls
services/search.py, sky.py or upload.py) and render.  Every error is a 400 (bad input) or
404 (unknown galaxy / set) with a message that says what was wrong; nothing is stored.
The galaxy page's "Similar galaxies" panel lives here too (registered in apps.py).
"""
from __future__ import annotations

import base64

import numpy as np
from django.conf import settings
from django.shortcuts import render

from webapp.catalog.models import Galaxy
from webapp.catalog.services import atlas
from webapp.embeddings.services import search, sky, upload
from webapp.embeddings.services.maps import latest_map
from webapp.embeddings.services.queries import (DEFAULT_K, PANEL_K, NotFound, check_body_size, parse_ids,
                                                resolve_set, sky_query, upload_query)


RESULT_THUMB = 96   # px of a result cell, drawn from the page's sprite atlas


def _k_text(request, default=DEFAULT_K):
    return request.GET.get("k") or request.POST.get("k") or default


def _upload_query(request):
    check_body_size(request.META.get("CONTENT_LENGTH"))  # refuse before parsing the body
    return upload_query(request.FILES.get("image"), request.POST.get("set"), request.POST.get("survey"),
                        request.POST.get("crop"), _k_text(request))


# ----------------------------------------------------------------- page

def search_home(request):
    """GET: by galaxy (galaxy=, or source= + survey=), by position (ra=, dec=), more like these
    (ids=); POST: by uploaded image.  Renders the query and a results grid with distances."""
    context = {"sets": list(search.ready_sets().select_related("encoder").order_by("-created_at", "-id")[:50]),
               "q": request.GET if request.method == "GET" else request.POST, "results": [], "error": "",
               "max_upload_mb": settings.MAX_UPLOAD_BYTES / 1024 / 1024, "mode": "", "notes": []}
    status = 200
    try:
        status = _run_page_query(request, context)
    except (search.GalaxyNotInSet, NotFound) as exc:
        context["error"], status = str(exc), 404
    except (search.SearchError, sky.SkyError, upload.UploadError) as exc:
        context["error"], status = str(exc), 400
    except upload.EncoderUnavailable as exc:
        context["error"], status = str(exc), 503
    context["atlas"] = atlas.with_sprites(context["results"], RESULT_THUMB) if context["results"] else None
    return render(request, "embeddings/search.html", context, status=status)


def _run_page_query(request, context) -> int:
    q = context["q"]
    if request.method == "POST":
        context["mode"] = "upload"
        es, survey, prepared, results = _upload_query(request)
        context.update(es=es, notes=prepared.notes, survey=survey,
                       preview=_preview_data_uri(survey, prepared.pixels), results=search.galaxy_cards(results))
        return 200
    k = search.check_k(_k_text(request))
    if q.get("source"):
        text = q["source"].strip()
        galaxy = Galaxy.objects.filter(source_id=text, **(
            {"survey__slug": q["survey"]} if q.get("survey") else {})).order_by("id").first()
        if galaxy is None and text.isdigit():  # a Latent Sky galaxy id
            galaxy = Galaxy.objects.filter(pk=int(text)).first()
        if galaxy is None:
            raise NotFound(f"no galaxy with source id or id {text!r}")
        q = {**q.dict(), "galaxy": str(galaxy.pk)}
    if q.get("galaxy"):
        try:
            gid = int(q["galaxy"])
        except ValueError:
            raise search.SearchError(f"galaxy must be a numeric id, got {q['galaxy']!r}") from None
        es = resolve_set(q.get("set"), gid)
        context.update(mode="galaxy", es=es, query=search.galaxy_cards([{"id": gid}], thumb_size=160),
                       results=search.galaxy_cards(search.nearest(es, gid, k)))
    elif q.get("ids"):
        ids = parse_ids(q["ids"])
        es = resolve_set(q.get("set"), ids[0])
        context.update(mode="similar", es=es, query=search.galaxy_cards([{"id": g} for g in ids]),
                       results=search.galaxy_cards(search.more_like_these(es, ids, k, q.get("rank") or "mean")))
    elif q.get("ra") or q.get("dec"):
        es = resolve_set(q.get("set"))
        match, results = sky_query(es, q.get("ra"), q.get("dec"), q.get("max_sep"), k)
        context.update(mode="sky", es=es, query=[match], results=results)
    if context.get("es"):
        context["map"] = latest_map(context["es"])
    return 200


def _preview_data_uri(survey, pixels: np.ndarray) -> str:
    """The preprocessed upload rendered like the survey's thumbnails, inline (never stored)."""
    from webapp.catalog.services.render import encode_png, render_pixels
    png = encode_png(render_pixels(survey, pixels, "composite"), 160)
    return "data:image/png;base64," + base64.b64encode(png).decode()


# ----------------------------------------------------------------- galaxy page panel

def neighbours_panel(request, galaxy):
    """Galaxy page: the 12 nearest neighbours in the newest ready set containing the galaxy."""
    es = search.latest_set_for(galaxy.pk, galaxy.survey_id)
    if es is None:
        return None
    context = {"es": es, "galaxy": galaxy, "error": "", "cards": [], "map": latest_map(es)}
    try:
        context["cards"] = search.galaxy_cards(search.nearest(es, galaxy.pk, PANEL_K))
        context["atlas"] = atlas.with_sprites(context["cards"], RESULT_THUMB)
    except search.SearchError as exc:
        context["error"] = str(exc)
    return {"template": "embeddings/map_neighbours_panel.html", "context": context}
