"""Catalogue JSON API: surveys, a survey's galaxies (keyset pages, sorted, filtered), a cone
search, one galaxy."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router

from webapp.apikit import Error, Out
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import atlas, browse, sky

router = Router()


class SurveyOut(Out):
    id: int
    name: str
    slug: str
    bands: list[str] | None = None
    image_kind: str | None = None
    pixel_scale_arcsec: float | None = Field(None, description="arcsec per pixel")
    psf_fwhm_arcsec: float | None = None
    status: str
    n_galaxies: int | None = None
    image_shape: list[int] | None = Field(None, description="N, C, H, W of the image store")
    url: str
    api_galaxies_url: str


class SurveyList(Out):
    surveys: list[SurveyOut]


class GalaxyOut(Out):
    id: int
    survey: str = Field(description="survey slug")
    source_id: str
    ra: float | None = Field(None, description="degrees, ICRS")
    dec: float | None = Field(None, description="degrees, ICRS")
    image_index: int
    metadata: dict
    url: str
    thumb_url: str


class GalaxyDetail(GalaxyOut):
    ra_hms: str
    dec_dms: str
    viewer_url: str | None = None
    bands: list[str] | None = None


class GalaxyPage(Out):
    survey: str
    count: int = Field(description="matching galaxies; an estimate when count_is_estimate")
    count_is_estimate: bool = Field(False, description="true on PostgreSQL for large filtered results")
    page: int
    num_pages: int
    per_page: int
    next_cursor: str = Field("", description="pass as cursor= for the next page; empty on the last")
    prev_cursor: str = Field("", description="pass as cursor= for the previous page")
    sort: str
    filters: list[str]
    metadata_keys: dict[str, str] = Field(description="catalogue column -> number or text")
    results: list[GalaxyOut]


class ConeGalaxy(GalaxyOut):
    distance_arcsec: float


class ConeResult(Out):
    survey: str
    ra: float
    dec: float
    radius: float = Field(description="degrees")
    count: int = Field(description="galaxies in the cone; results holds the nearest `limit`")
    results: list[ConeGalaxy]


class ConeQuery(Out):
    ra: str | None = Field(None, description="cone centre, degrees ICRS (required)")
    dec: str | None = Field(None, description="cone centre, degrees ICRS (required)")
    radius: str | None = Field(None, description=f"degrees, above 0 and at most {sky.MAX_RADIUS_DEG} (required)")
    limit: int = Field(sky.DEFAULT_LIMIT, ge=1, le=sky.MAX_LIMIT)


class GridQuery(Out):
    page: int | None = Field(None, ge=1, description="page number, for the first 10,000 rows")
    cursor: str = Field("", description="next_cursor / prev_cursor of another page (any depth)")
    per: int = Field(100, ge=1, le=500)
    sort: str | None = Field(None, description="source_id, ra, dec or a numeric metadata key; - for descending")
    f: list[str] = Field([], description="filters such as mag_r<17 or class:spiral")


@router.get("/surveys/", response=SurveyList, url_name="api_survey_list", summary="List surveys")
def api_survey_list(request):
    return {"surveys": [browse.survey_dict(s) for s in Survey.objects.all()]}


@router.get("/surveys/{slug:slug}/galaxies/", response={200: GalaxyPage, 400: Error, 404: Error},
            url_name="api_survey_galaxies", summary="A page of a survey's galaxies, sortable and filterable")
def api_survey_galaxies(request, slug: str, q: Query[GridQuery]):
    survey = get_object_or_404(Survey, slug=slug)
    page, extra = browse.grid_page(survey, q.f, q.sort, q.per, q.page, q.cursor)
    return {
        "survey": survey.slug, "count": page.count, "count_is_estimate": page.count_is_estimate,
        "page": page.number, "num_pages": page.num_pages, "per_page": extra["per_page"],
        "next_cursor": page.next_cursor, "prev_cursor": page.prev_cursor,
        "sort": ("-" if extra["descending"] else "") + extra["sort_key"],
        "filters": [str(f) for f in extra["filters"]], "metadata_keys": extra["key_kinds"],
        "results": [browse.galaxy_dict(g, survey) for g in page.object_list],
    }


@router.get("/surveys/{slug:slug}/cone", response={200: ConeResult, 400: Error, 404: Error},
            url_name="api_survey_cone", summary="Galaxies of a survey within a cone, nearest first")
def api_survey_cone(request, slug: str, q: Query[ConeQuery]):
    survey = get_object_or_404(Survey, slug=slug)
    cone = sky.parse_cone(q.ra, q.dec, q.radius)
    rows, distances, n_inside = sky.cone_search(survey, cone, limit=q.limit)
    return {"survey": survey.slug, "ra": cone.ra, "dec": cone.dec, "radius": cone.radius, "count": n_inside,
            "results": [{**browse.galaxy_dict(g, survey), "distance_arcsec": d * 3600}
                        for g, d in zip(rows, distances)]}


class AtlasQuery(Out):
    ids: str = Field(..., description="comma-separated galaxy ids, in the order the cells are drawn")
    size: str = Field("72", description="cell size in px")


class AtlasLayout(Out):
    url: str = Field(description="the sprite image (immutable once every member rendered)")
    size: int
    columns: int
    rows: int
    background_size: str = Field(description="CSS background-size of each cell")
    positions: list[str] = Field(description="CSS background-position of each id, in order")


@router.get("/thumbs/atlas", response={200: AtlasLayout, 400: Error}, url_name="api_thumb_atlas",
            summary="One sprite atlas for a list of galaxies (drawers built in the browser): one image, not one per galaxy")
def api_thumb_atlas(request, q: Query[AtlasQuery]):
    ids, size = atlas.parse_request([q.ids], [q.size])           # AtlasError (a ValueError): 400
    sprites = atlas.layout(atlas.members_of(ids), size)
    return {"url": sprites.url, "size": sprites.size, "columns": sprites.columns, "rows": sprites.rows,
            "background_size": sprites.background_size, "positions": sprites.positions}


@router.get("/galaxies/{int:galaxy_id}/", response={200: GalaxyDetail, 404: Error}, url_name="api_galaxy_detail",
            summary="One galaxy with its catalogue metadata")
def api_galaxy_detail(request, galaxy_id: int):
    galaxy = get_object_or_404(Galaxy.objects.select_related("survey").only(
        *browse.GALAXY_FIELDS, *[f"survey__{f.name}" for f in Survey._meta.concrete_fields]), pk=galaxy_id)
    ra_hms, dec_dms = browse.sexagesimal(galaxy.ra, galaxy.dec)
    data = browse.galaxy_dict(galaxy, galaxy.survey)
    data.update({"ra_hms": ra_hms, "dec_dms": dec_dms, "viewer_url": galaxy.survey.viewer_url(galaxy),
                 "bands": galaxy.survey.bands})
    return data
