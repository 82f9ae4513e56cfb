"""Catalogue pages: survey list, galaxy grid, galaxy detail, thumbnails and JSON API.

Login is enforced by LoginRequiredMiddleware.  Galaxy.truth is never loaded
here (querysets use browse.GALAXY_FIELDS) and so never reaches HTML or JSON.

Other apps add panels to the galaxy page (neighbours, predictions, anomaly
scores) with ``register_detail_panel`` from their AppConfig.ready(): a panel
is ``func(request, galaxy) -> {"template": str, "context": dict} | None``.
"""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.accounts.roles import role_required
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import atlas, browse, paging, render as rendering, sky, static_thumbs
from webapp.catalog.services.store_cache import StoreMissing

PER_PAGE_DEFAULT = browse.PER_PAGE_DEFAULT
PER_PAGE_CHOICES = (50, 100, 200)
GRID_THUMB = 96   # px per grid cell image
SAMPLE_STRIP = 8  # thumbnails per survey card on the survey list
DETAIL_PANELS: list = []


def register_detail_panel(func):
    """Add a panel to the galaxy detail page (see module docstring); returns func (decorator)."""
    if func not in DETAIL_PANELS:
        DETAIL_PANELS.append(func)
    return func


# ----------------------------------------------------------------- survey list

def survey_list(request):
    surveys = list(Survey.objects.all())
    return render(request, "catalog/survey_list.html", {"surveys": surveys, "samples": _sample_strips(surveys)})


def _sample_strips(surveys) -> dict[int, list]:
    """Evenly spaced galaxies of each ready survey, in one query."""
    wanted = Q(pk__in=[])
    for s in surveys:
        if s.status == Survey.Status.READY and s.n_galaxies:
            step = max(s.n_galaxies // SAMPLE_STRIP, 1)
            wanted |= Q(survey_id=s.pk, image_index__in=[i * step for i in range(SAMPLE_STRIP)])
    strips: dict[int, list] = {s.pk: [] for s in surveys}
    by_id = {s.pk: s for s in surveys}
    for g in Galaxy.objects.filter(wanted).only(*browse.GALAXY_FIELDS).order_by("survey_id", "image_index"):
        strips[g.survey_id].append({"galaxy": g, "thumb": browse.thumb_url(g, by_id[g.survey_id])})
    return strips


# ----------------------------------------------------------------- grid

def _grid_query(survey, filter_texts: list[str], sort: str | None, per, page_no, cursor: str = ""):
    """(page, context) for the grid page and its API; raises BrowseError on bad input."""
    return browse.grid_page(survey, filter_texts, sort, per, page_no, cursor)


def _query_string(request, drop=(), **overrides) -> str:
    """The current query string with some keys dropped/overridden (keeps repeated f=)."""
    items = [(k, v) for k, vs in request.GET.lists() for v in vs if k not in drop and k not in overrides]
    items += [(k, v) for k, v in overrides.items() if v not in (None, "")]
    return urlencode(items)


def survey_grid(request, slug):
    survey = get_object_or_404(Survey, slug=slug)
    key, op, value = (request.GET.get(k, "").strip() for k in ("key", "op", "value"))
    if key and value:  # the add-filter form: fold into a canonical ?f=key<op>value URL
        new = f"{key}{':' if op in ('', '=') else op}{value}"
        qs = _query_string(request, drop=("key", "op", "value", "page", "cursor"))
        return redirect(f"{request.path}?{qs}{'&' if qs else ''}{urlencode({'f': new})}")
    context = {"survey": survey, "error": "", "cone": None,
               "cone_form": {k: request.GET.get(k, "") for k in ("ra", "dec", "radius")}}
    status = 200
    try:
        if any(request.GET.get(k, "").strip() for k in ("ra", "dec", "radius")):
            page, extra = _cone_page(survey, request, context)
        else:
            page, extra = _grid_query(survey, request.GET.getlist("f"), request.GET.get("sort"),
                                      request.GET.get("per"), request.GET.get("page"),
                                      request.GET.get("cursor", ""))
    except (browse.BrowseError, sky.ConeError) as exc:
        context["error"], status, context["cone"] = str(exc), 400, None
        page, extra = paging.KeysetPage([], 1, PER_PAGE_DEFAULT, 0, False), {
            "filters": [], "sort_key": "", "descending": False,
            "key_kinds": browse.metadata_keys(survey), "per_page": PER_PAGE_DEFAULT}
    context.update(extra)
    context.update(_grid_links(request, page, extra, survey, context["cone"]))
    return render(request, "catalog/survey_grid.html", context, status=status)


def _cone_page(survey, request, context):
    """The nearest galaxies in the cone of the RA/Dec/radius form, as one page."""
    cone = sky.parse_cone(request.GET.get("ra"), request.GET.get("dec"), request.GET.get("radius"))
    try:
        per = int(request.GET.get("per") or PER_PAGE_DEFAULT)
    except ValueError:
        raise browse.BrowseError("per must be an integer") from None
    if not 1 <= per <= 500:
        raise browse.BrowseError("per must be between 1 and 500")
    rows, distances, n_inside = sky.cone_search(survey, cone, limit=per)
    context["cone"] = {"ra": cone.ra, "dec": cone.dec, "radius": cone.radius, "n": n_inside,
                       "distances": {g.pk: d * 3600 for g, d in zip(rows, distances)}}
    return paging.KeysetPage(rows, 1, per, n_inside, False), {
        "filters": [], "sort_key": "", "descending": False,
        "key_kinds": browse.metadata_keys(survey), "per_page": per}


def _grid_links(request, page, extra, survey, cone=None) -> dict:
    here = _query_string(request, drop=("page", "cursor"))
    grid_qs = _query_string(request)
    cells = []
    sort_key = extra["sort_key"]
    for g in page.object_list:
        value = None
        if cone:
            value = f"{cone['distances'][g.pk]:.1f}″"
        elif sort_key and sort_key not in browse.COLUMNS:
            value = (g.metadata or {}).get(sort_key)
        elif sort_key == "mag":
            value = g.mag
        cells.append({"galaxy": g, "sort_value": value,
                      "url": f"/galaxies/{g.pk}/" + (f"?{urlencode({'grid': grid_qs})}" if grid_qs else "")})
    # One sprite atlas for the page's cells instead of a thumbnail request per cell.
    sprites = atlas.layout([(g, survey) for g in page.object_list], GRID_THUMB)
    for cell, position in zip(cells, sprites.positions if sprites else []):
        cell["sprite"] = position
    filters = [{"text": str(f), "remove": _remove_filter(request, str(f))} for f in extra["filters"]]
    sort_options = [("", "catalogue order"), ("source_id", "source id"), ("ra", "RA"), ("dec", "Dec"),
                    ("mag", "magnitude")]
    sort_options += [(k, k) for k, kind in extra["key_kinds"].items() if kind == "number"]
    return {
        "page": page, "cells": cells, "atlas": sprites, "active_filters": filters, "sort_options": sort_options,
        "per_page_choices": PER_PAGE_CHOICES, "grid_qs": grid_qs,
        "prev_url": f"?{here}{'&' if here else ''}cursor={page.prev_cursor}" if page.prev_cursor else "",
        "next_url": f"?{here}{'&' if here else ''}cursor={page.next_cursor}" if page.next_cursor else "",
        "first_url": f"?{here}" if page.number > 1 else "",
        "keep_params": [(k, v) for k, vs in request.GET.lists() for v in vs if k in ("f", "per")],
        "keep_for_filter": [(k, v) for k, vs in request.GET.lists() for v in vs if k in ("f", "per", "sort")],
    }


def _remove_filter(request, text: str) -> str:
    items = [(k, v) for k, vs in request.GET.lists() for v in vs
             if k not in ("page", "cursor") and not (k == "f" and browse.parse_filter_safe(v) == text)]
    return "?" + urlencode(items)


# ----------------------------------------------------------------- detail

def galaxy_detail(request, galaxy_id):
    galaxy = get_object_or_404(Galaxy.objects.select_related("survey").only(
        *browse.GALAXY_FIELDS, *[f"survey__{f.name}" for f in Survey._meta.concrete_fields]), pk=galaxy_id)
    survey = galaxy.survey
    neighbours = Galaxy.objects.filter(survey=survey).only("id")
    prev_g = neighbours.filter(image_index__lt=galaxy.image_index).order_by("-image_index").first()
    next_g = neighbours.filter(image_index__gt=galaxy.image_index).order_by("image_index").first()
    grid_qs = request.GET.get("grid", "")
    if grid_qs:
        back = f"/surveys/{survey.slug}/?{grid_qs}"
    else:   # the catalogue-order page that holds this galaxy, by its image index (no count)
        page_start = galaxy.image_index - galaxy.image_index % PER_PAGE_DEFAULT
        number = page_start // PER_PAGE_DEFAULT + 1
        if page_start <= paging.OFFSET_LIMIT:
            back = f"/surveys/{survey.slug}/?page={number}"
        else:
            back = f"/surveys/{survey.slug}/?" + urlencode({"cursor": paging.cursor_before_index(page_start, number)})
    keep = f"?{urlencode({'grid': grid_qs})}" if grid_qs else ""
    card = browse.galaxy_card(galaxy, survey, thumbs={"composite_url": 320})
    panels = [p for p in (func(request, galaxy) for func in DETAIL_PANELS) if p]
    return render(request, "catalog/galaxy_detail.html", {
        "galaxy": galaxy, "survey": survey, "ra_hms": card["ra_hms"], "dec_dms": card["dec_dms"],
        # Every band, a single-band survey's too (the card leaves those out).
        "bands": browse.band_images(galaxy, survey, {"url": 128}),
        "composite_url": card["composite_url"],
        "prev_url": f"/galaxies/{prev_g.pk}/{keep}" if prev_g else "",
        "next_url": f"/galaxies/{next_g.pk}/{keep}" if next_g else "",
        "back_url": back, "viewer_url": survey.viewer_url(galaxy),
        "metadata": sorted(card["metadata"].items()), "detail_panels": panels,
        "field_arcsec": card["field_arcsec"],
    })


# ----------------------------------------------------------------- thumbnails

THUMB_SURVEY_FIELDS = ("id", "image_checksum", "image_shape", "bands", "image_kind", "store_path", "n_galaxies",
                       "status", "cutout_url_template", "cutout_layer", "cutout_field_arcsec")


def thumbnail(request, galaxy_id):
    galaxy = get_object_or_404(Galaxy.objects.select_related("survey").only(
        "id", "image_index", "ra", "dec", "source_id", *[f"survey__{f}" for f in THUMB_SURVEY_FIELDS]),
        pk=galaxy_id)
    survey = galaxy.survey
    try:
        size = rendering.parse_size(request.GET.get("size"))
        band = rendering.parse_band(survey, request.GET.get("band")) if survey.store_path else "composite"
    except rendering.RenderError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    etag = rendering.thumbnail_etag(survey, galaxy, size, band)
    if etag and etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return HttpResponse(status=304, headers={"Cache-Control": f"public, max-age={rendering.LOCAL_MAX_AGE}",
                                                 "ETag": etag})
    try:
        thumb = rendering.galaxy_thumbnail(survey, galaxy, size, band)
    except StoreMissing:
        raise Http404("this survey has no image store yet") from None
    headers = {"Cache-Control": thumb.cache_control}
    if thumb.etag:
        headers["ETag"] = thumb.etag
    return HttpResponse(thumb.data, content_type=thumb.content_type, headers=headers)


def thumbnail_immutable(request, galaxy_id, key):
    """/thumbs/<id>/<variant>-<digest>.png: a content-addressed thumbnail (services/static_thumbs.py),
    immutable for a year; a stale key (re-ingest, new template) is 404, a placeholder is not immutable."""
    galaxy = get_object_or_404(Galaxy.objects.select_related("survey").only(
        "id", "image_index", "ra", "dec", "source_id", *[f"survey__{f}" for f in THUMB_SURVEY_FIELDS]),
        pk=galaxy_id)
    survey = galaxy.survey
    try:
        band, size = static_thumbs.parse_key(key)
        if band != "composite":
            band = rendering.parse_band(survey, band[1:])
    except rendering.RenderError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    if static_thumbs.content_key(survey, galaxy, size, band) != key:
        raise Http404("no thumbnail has this key now (the survey was re-ingested or its cutouts changed)")
    try:
        thumb = static_thumbs.thumbnail_file(survey, galaxy, size, band)
    except StoreMissing:
        raise Http404("this survey has no image store yet") from None
    return _file_response(thumb.path, thumb.data, thumb.content_type, thumb.cache_control, thumb.ok)


def thumbnail_atlas(request, digest):
    """/thumbs/atlas/<digest>.jpg?size=&ids=: one sprite image of a page's thumbnails (services/atlas.py)."""
    try:
        ids, size = atlas.parse_request(request.GET.getlist("ids"), request.GET.getlist("size"))
        members = atlas.members_of(ids)
    except atlas.AtlasError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    if atlas.atlas_digest(members, size) != digest:
        raise Http404("no atlas has this key now (a member's survey was re-ingested or its cutouts changed)")
    try:
        image = atlas.build(members, size, digest)
    except StoreMissing:
        raise Http404("a member's survey has no image store yet") from None
    return _file_response(image.path, image.data, atlas.CONTENT_TYPE, image.cache_control, image.ok)


def _file_response(path, data, content_type: str, cache_control: str, servable: bool):
    """A cached file as an X-Accel-Redirect for nginx (settings.ACCEL_REDIRECT) or a FileResponse;
    bytes only in memory (placeholders, uncached atlases) as they are.  Only ``servable`` (complete,
    immutable) files go to nginx, whose location adds the year-long header itself."""
    headers = {"Cache-Control": cache_control}
    if path is not None and servable:
        uri = static_thumbs.accel_uri(path)
        if uri is not None:
            return HttpResponse(b"", content_type=content_type, headers={**headers, "X-Accel-Redirect": uri})
        try:
            return FileResponse(open(path, "rb"), content_type=content_type, headers=headers)
        except FileNotFoundError:   # evicted since it was found: the bytes, when we have them
            if data is None:
                raise Http404("thumbnail evicted; reload") from None
    return HttpResponse(data, content_type=content_type, headers=headers)


# ----------------------------------------------------------------- curator action

@require_POST
@role_required("curator")
def survey_prerender(request, slug):
    from webapp.jobs.services import create_job
    survey = get_object_or_404(Survey, slug=slug)
    job = create_job("render_thumbnails", {"survey_id": survey.pk}, user=request.user,
                     title=f"Render thumbnails: {survey.name}")
    messages.info(request, f"Rendering thumbnails of {survey.name} (job {job.pk}).")
    return redirect("jobs:detail", job_id=job.pk)


@role_required("curator")
def survey_cutout_source(request, slug):
    """Curators set the survey's remote cutout URL template (used when it has no local store)."""
    from webapp.catalog.forms import CutoutSourceForm
    from webapp.catalog.cutout_templates import EXAMPLE_TEMPLATES
    survey = get_object_or_404(Survey, slug=slug)
    form = CutoutSourceForm(request.POST or None, instance=survey)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.info(request, f"Remote cutouts of {survey.name} saved.")
        return redirect("catalog:survey_cutout_source", slug=survey.slug)
    survey.refresh_from_db()  # the preview shows the saved settings, not a rejected edit
    samples = [{"galaxy": g, "thumb": browse.thumb_url(g, survey, size=96)}
               for g in Galaxy.objects.filter(survey=survey).only(*browse.GALAXY_FIELDS).order_by("image_index")[:4]]
    return render(request, "catalog/cutout_source.html", {
        "survey": survey, "form": form, "examples": EXAMPLE_TEMPLATES, "samples": samples,
        "has_store": bool(survey.store_path)}, status=400 if form.errors else 200)
