"""Catalogue JSON API: surveys, a survey's galaxies (paged, sorted, filtered), one galaxy."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router

from webapp.apikit import Error, Out
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import browse
from webapp.catalog.views import _grid_query

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
    count: int
    page: int
    num_pages: int
    per_page: int
    sort: str
    filters: list[str]
    metadata_keys: dict[str, str] = Field(description="catalogue column -> number or text")
    results: list[GalaxyOut]


class GridQuery(Out):
    page: int | None = Field(None, ge=1)
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
    page, extra = _grid_query(survey, q.f, q.sort, q.per, q.page)
    return {
        "survey": survey.slug, "count": page.paginator.count, "page": page.number,
        "num_pages": page.paginator.num_pages, "per_page": extra["per_page"],
        "sort": ("-" if extra["descending"] else "") + extra["sort_key"],
        "filters": [str(f) for f in extra["filters"]], "metadata_keys": extra["key_kinds"],
        "results": [browse.galaxy_dict(g, survey) for g in page.object_list],
    }


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
