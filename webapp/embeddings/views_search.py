"""Similarity search pages (the JSON API is api_search.py): by galaxy, by RA/Dec, by uploaded image, "more like these".

Views validate input, call services/search.py (faiss), services/sky.py (astropy cross-match)
or services/upload.py (decode + embed), and render.  Every error is a 400 (bad input) or
404 (unknown galaxy / set) with a message that says what was wrong; nothing is stored.
The galaxy page's "Similar galaxies" panel lives here too (registered in apps.py).
"""
from __future__ import annotations

import base64

import numpy as np
from django.conf import settings
from django.shortcuts import render

from webapp.catalog.models import Galaxy, Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services import search, sky, upload
from webapp.embeddings.services.maps import latest_map, load_coords
from webapp.embeddings.services.vectors import load_embedding_set

DEFAULT_K = 48        # results on the search page (a 6-8 column grid)
PANEL_K = 12          # neighbours on the galaxy page and in the map's side panel
MAX_IDS = 500         # positives accepted by "more like these"


class NotFound(Exception):
    """404 with a message (JSON or page)."""


def parse_ids(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        ids = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise search.SearchError("ids must be comma-separated galaxy ids, e.g. 12,40,41") from None
    if len(ids) > MAX_IDS:
        raise search.SearchError(f"at most {MAX_IDS} galaxies, got {len(ids)}")
    if any(not 0 < g < 2**63 for g in ids):  # database integers are 64-bit
        raise search.SearchError("galaxy ids are positive 64-bit integers")
    return list(dict.fromkeys(ids))


def resolve_set(value, galaxy_id: int | None = None) -> EmbeddingSet:
    """The requested set, else the newest ready set containing the galaxy, else the newest ready set."""
    if value not in (None, ""):
        try:
            es = EmbeddingSet.objects.select_related("encoder").get(pk=int(value))
        except (ValueError, EmbeddingSet.DoesNotExist):
            raise NotFound(f"embedding set {value} does not exist") from None
        if es.status != ArtifactStatus.READY:
            raise search.SearchError(f"embedding set {es.pk} is {es.status}, not ready")
        return es
    if galaxy_id is not None:
        survey_id = Galaxy.objects.filter(pk=galaxy_id).values_list("survey_id", flat=True).first()
        if survey_id is None:
            raise NotFound(f"galaxy {galaxy_id} does not exist")
        es = search.latest_set_for(galaxy_id, survey_id)
        if es is None:
            raise NotFound(f"no ready embedding set contains galaxy {galaxy_id}; embed its survey first")
        return es
    es = search.ready_sets().select_related("encoder").order_by("-created_at", "-id").first()
    if es is None:
        raise NotFound("no embedding set is ready yet; train an encoder and embed a survey first")
    return es


def _k(request, default=DEFAULT_K) -> int:
    return search.check_k(request.GET.get("k") or request.POST.get("k") or default)


def _with_map_coords(es, cards, map_id) -> list[dict]:
    """Add x, y of the set's map (given id, else latest) so the map can highlight results."""
    given = str(map_id).isdigit() and int(map_id) < 2**63
    lm = es.maps.filter(pk=int(map_id), status=ArtifactStatus.READY).first() if given else latest_map(es)
    if lm is None:
        return cards
    coords = load_coords(lm)
    _, _, row_of = load_embedding_set(es)
    for card in cards:
        row = row_of.get(card["id"])
        if row is not None:
            card["x"], card["y"] = float(coords[row, 0]), float(coords[row, 1])
    return cards


def _set_dict(es) -> dict:
    return {"id": es.pk, "name": str(es), "n": es.n, "dim": es.dim, "index": search.index_description(es)}


# ----------------------------------------------------------------- shared with the JSON API (api_search.py)

def sky_query(es, ra_text, dec_text, max_sep_text, k) -> tuple[dict, list[dict]]:
    ra = sky.parse_angle(ra_text, "RA")
    dec = sky.parse_angle(dec_text, "Dec")
    sky.check_radec(ra, dec)
    try:
        max_sep = float(max_sep_text) if max_sep_text not in (None, "") else sky.DEFAULT_MAX_SEP_ARCSEC
    except ValueError:
        raise search.SearchError(f"max_sep must be a number of arcseconds, got {max_sep_text!r}") from None
    found = sky.nearest_object(es, ra, dec)
    if found is None:
        raise NotFound(f"no galaxy of embedding set {es.pk} has a sky position")
    gid, sep = found
    card = search.galaxy_cards([{"id": gid, "separation_arcsec": round(sep, 3)}], thumb_size=160)[0]
    if sep > max_sep:
        raise NotFound(f"no galaxy within {max_sep:g}″ of RA {ra:.5f}°, Dec {dec:+.5f}°; the nearest, "
                       f"{card['source_id']}, is {_arc(sep)} away")
    return card, search.galaxy_cards(search.nearest(es, gid, k))


def _arc(arcsec: float) -> str:
    return f"{arcsec:.1f}″" if arcsec < 60 else f"{arcsec / 60:.1f}′" if arcsec < 3600 else f"{arcsec / 3600:.2f}°"


def upload_query(request):
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.MAX_UPLOAD_BYTES + 64 * 1024:  # refuse before parsing the body
        upload.check_upload_size(length)
    data = upload.read_upload(request.FILES.get("image"))
    es = resolve_set(request.POST.get("set"))
    survey = _upload_survey(es, request.POST.get("survey"))
    crop = request.POST.get("crop") or None
    try:
        crop = float(crop) if crop is not None else None
    except ValueError:
        raise upload.UploadError(f"crop must be a number in (0, 1], got {crop!r}") from None
    prepared = upload.prepare_upload(data, survey, crop)
    vector = upload.embed_prepared(es.encoder, prepared)
    return es, survey, prepared, search.nearest_to_vector(es, vector, _k(request))


def _upload_survey(es, slug) -> Survey:
    surveys = list(es.surveys.filter(status=Survey.Status.READY))
    if not surveys:
        raise search.SearchError(f"embedding set {es.pk} has no ready survey to preprocess like")
    if slug:
        chosen = [s for s in surveys if s.slug == slug]
        if not chosen:
            raise search.SearchError(f"survey {slug!r} is not part of embedding set {es.pk} "
                                     f"({', '.join(s.slug for s in surveys)})")
        return chosen[0]
    return surveys[0]


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
    return render(request, "embeddings/search.html", context, status=status)


def _run_page_query(request, context) -> int:
    q = context["q"]
    if request.method == "POST":
        context["mode"] = "upload"
        es, survey, prepared, results = upload_query(request)
        context.update(es=es, notes=prepared.notes, survey=survey,
                       preview=_preview_data_uri(survey, prepared.pixels), results=search.galaxy_cards(results))
        return 200
    k = _k(request)
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
    except search.SearchError as exc:
        context["error"] = str(exc)
    return {"template": "embeddings/map_neighbours_panel.html", "context": context}
