"""Similarity search JSON API: neighbours of a galaxy, more like these, by RA/Dec, by uploaded image,
and galaxy cards.  The query helpers shared with the search page are services/queries.py."""
from __future__ import annotations

from typing import Literal

from ninja import Field, File, Form, Query, Router, Schema
from ninja.files import UploadedFile

from webapp.apikit import Error, Out
from webapp.catalog.models import Galaxy
from webapp.embeddings.services import search
from webapp.embeddings.services.queries import (DEFAULT_K, PANEL_K, NotFound, check_body_size, parse_ids,
                                                resolve_set, set_dict, sky_query, upload_query, with_map_coords)
from webapp.embeddings.services.vectors import load_embedding_set

router = Router()
SET = "embedding set id; default: the newest ready set (containing the galaxy)"
K = dict(ge=1, le=search.MAX_K)


class SetOut(Out):
    id: int
    name: str
    n: int | None = None
    dim: int | None = None
    index: dict | str | None = Field(None, description="the search index (kind, build time) or exact search")


class Card(Out):
    id: int
    source_id: str | None = None
    survey: str | None = None
    ra: float | None = None
    dec: float | None = None
    url: str | None = None
    thumb_url: str | None = None
    distance: float | None = None
    x: float | None = Field(None, description="map position (with map=)")
    y: float | None = None


class Neighbours(Out):
    embedding_set: SetOut
    galaxy: Card
    results: list[Card]


class Similar(Out):
    embedding_set: SetOut
    positives: list[int]
    results: list[Card]


class SkyMatch(Out):
    embedding_set: SetOut
    match: Card = Field(description="the nearest catalogue object, with separation_arcsec")
    results: list[Card]


class UploadResult(Out):
    embedding_set: SetOut
    survey: str
    format: str = Field(description="FITS, PNG or JPEG")
    notes: list[str]
    results: list[Card]


class Cards(Out):
    results: list[Card]


class NeighboursQuery(Schema):
    set: int | None = Field(None, description=SET, ge=1)
    k: int = Field(PANEL_K, **K)
    map: int | None = Field(None, description="add x, y on this map (default: the set's newest map)")


class SimilarQuery(Schema):
    ids: str = Field(description="positives, comma-separated galaxy ids (at most 500)")
    set: int | None = Field(None, description=SET, ge=1)
    k: int = Field(DEFAULT_K, **K)
    mode: Literal["mean", "rrf"] = Field("mean", description="mean direction, or reciprocal-rank fusion")
    map: int | None = None


class SkyQuery(Schema):
    ra: str = Field(description="degrees or sexagesimal hours, ICRS")
    dec: str = Field(description="degrees or sexagesimal degrees, ICRS")
    max_sep: float | None = Field(None, description="arcseconds", ge=0)
    set: int | None = Field(None, description=SET, ge=1)
    k: int = Field(DEFAULT_K, **K)


class CardsQuery(Schema):
    ids: str | None = Field(None, description="comma-separated galaxy ids")
    source: str | None = Field(None, description="a catalogue source id")
    set: int | None = Field(None, description="only galaxies of this embedding set", ge=1)


ERRORS = {400: Error, 404: Error}


@router.get("/search/neighbours/{int:galaxy_id}", response={200: Neighbours, **ERRORS},
            url_name="search_api_neighbours", summary="The k nearest galaxies to one galaxy (itself excluded)")
def api_neighbours(request, galaxy_id: int, q: Query[NeighboursQuery]):
    es = resolve_set(q.set, galaxy_id)
    results = search.nearest(es, galaxy_id, q.k)
    cards = search.galaxy_cards(results + [{"id": galaxy_id}])  # one query for the results and the galaxy
    if not cards or cards[-1]["id"] != galaxy_id:
        raise NotFound(f"galaxy {galaxy_id} does not exist")
    if q.map:
        cards = with_map_coords(es, cards, q.map)
    return {"embedding_set": set_dict(es), "galaxy": cards[-1], "results": cards[:-1]}


@router.get("/search/similar", response={200: Similar, **ERRORS}, url_name="search_api_similar",
            summary="More like these: galaxies similar to several positives (positives excluded)")
def api_similar(request, q: Query[SimilarQuery]):
    ids = parse_ids(q.ids)
    if not ids:
        raise search.SearchError("give the positives as ids=1,2,3")
    es = resolve_set(q.set, ids[0])
    results = search.more_like_these(es, ids, q.k, q.mode)
    return {"embedding_set": set_dict(es), "positives": ids,
            "results": with_map_coords(es, search.galaxy_cards(results), q.map)}


@router.get("/search/sky", response={200: SkyMatch, **ERRORS}, url_name="search_api_sky",
            summary="Nearest catalogue object to an RA/Dec (ICRS), then its look-alikes")
def api_sky(request, q: Query[SkyQuery]):
    es = resolve_set(q.set)
    match, results = sky_query(es, q.ra, q.dec, q.max_sep, q.k)
    return {"embedding_set": set_dict(es), "match": match, "results": results}


@router.post("/search/upload", response={200: UploadResult, 413: Error, 503: Error, **ERRORS},
             url_name="search_api_upload",
             summary="Search by an uploaded FITS, PNG or JPEG cutout (preprocessed like the survey; nothing stored)",
             description="Size limit: LATENTSKY_MAX_UPLOAD_BYTES (413 above it).")
def api_upload(request, image: UploadedFile | None = File(None, description="FITS, PNG or JPEG cutout"),
               set: int | None = Form(None, description=SET, ge=1),  # noqa: A002 - the API's name
               survey: str | None = Form(None, description="preprocess like this survey of the set"),
               crop: float | None = Form(None, description="keep this central fraction", gt=0, le=1),
               k: int = Form(DEFAULT_K, **K)):
    check_body_size(request.META.get("CONTENT_LENGTH"))
    es, survey_row, prepared, results = upload_query(image, set, survey, crop,
                                                     request.GET.get("k") or k)  # ?k= wins, as on the page
    return {"embedding_set": set_dict(es), "survey": survey_row.slug, "format": prepared.file_format,
            "notes": prepared.notes, "results": search.galaxy_cards(results)}


@router.get("/search/galaxies", response={200: Cards, **ERRORS}, url_name="search_api_galaxies",
            summary="Galaxy cards (source id, survey, position, thumbnail URL) by id or source id")
def api_galaxies(request, q: Query[CardsQuery]):
    ids = parse_ids(q.ids)
    if q.source:
        ids += list(Galaxy.objects.filter(source_id=q.source.strip()).values_list("id", flat=True)[:20])
    if q.set:
        _, _, row_of = load_embedding_set(resolve_set(q.set))
        ids = [g for g in ids if g in row_of]
    return {"results": search.galaxy_cards([{"id": g} for g in ids])}
