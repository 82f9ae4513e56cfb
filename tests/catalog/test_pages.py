"""Catalogue pages and JSON: survey list, grid (paging, sorting, filters), detail, thumbnails."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from webapp.catalog.models import Galaxy
from tests.catalog.factories import make_survey

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture
def viewer(make_user, client):
    client.force_login(make_user("viewer"))
    return client


@pytest.fixture
def survey():
    return make_survey(n=30, size=16)


def grid_ids(response):
    return [c["galaxy"].pk for c in response.context["cells"]]


def api_source_ids(client, slug, **params):
    response = client.get(f"/api/surveys/{slug}/galaxies/", params)
    assert response.status_code == 200, response.content
    return [g["source_id"] for g in response.json()["results"]]


def test_pages_need_login(role_clients, survey):
    anon = role_clients["anonymous"]
    assert anon.get("/surveys/").status_code == 302
    assert anon.get(f"/surveys/{survey.slug}/").status_code == 302
    assert anon.get("/api/surveys/").status_code == 401


def test_survey_list_shows_surveys_facts_and_sample_strip(viewer, survey):
    make_survey(name="Other survey", slug="other", n=3, size=16)
    response = viewer.get("/surveys/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Test survey" in html and "Other survey" in html and "0.396″/px" in html
    assert len(response.context["samples"][survey.pk]) == 8
    assert html.count('<img src="/thumbs/') == 8 + 3


def test_survey_list_empty_state(viewer):
    assert "No surveys yet" in viewer.get("/surveys/").content.decode()


def test_grid_paginates_100_by_default(viewer):
    survey = make_survey(n=130, size=16)
    first = viewer.get(f"/surveys/{survey.slug}/")
    assert first.status_code == 200
    assert grid_ids(first) == list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("pk", flat=True)[:100])
    second = viewer.get(f"/surveys/{survey.slug}/?page=2")
    assert len(grid_ids(second)) == 30
    assert viewer.get(f"/surveys/{survey.slug}/?per=50&page=3").context["page"].number == 3


def test_grid_sorts_by_metadata_and_columns(viewer, survey):
    by_mag = viewer.get(f"/surveys/{survey.slug}/?sort=mag_r&per=5")
    # mag_r decreases with image index, so ascending magnitude is reverse catalogue order.
    assert [c["galaxy"].source_id for c in by_mag.context["cells"]] == [f"OBJ{i:05d}" for i in (29, 28, 27, 26, 25)]
    assert api_source_ids(viewer, survey.slug, sort="-mag_r", per=3) == ["OBJ00000", "OBJ00001", "OBJ00002"]
    assert api_source_ids(viewer, survey.slug, sort="-dec", per=2) == ["OBJ00000", "OBJ00001"]
    assert api_source_ids(viewer, survey.slug, sort="-source_id", per=2) == ["OBJ00029", "OBJ00028"]


def test_grid_sort_puts_galaxies_missing_the_key_last(viewer):
    survey = make_survey(n=6, size=16, metadata=lambda i: {"z": 0.1 * (6 - i)} if i % 2 else {})
    assert api_source_ids(viewer, survey.slug, sort="z") == ["OBJ00005", "OBJ00003", "OBJ00001", "OBJ00000", "OBJ00002", "OBJ00004"]


def test_grid_filters_by_text_and_numeric_metadata(viewer, survey):
    assert api_source_ids(viewer, survey.slug, f="label:merger") == [f"OBJ{i:05d}" for i in range(3, 30, 4)]
    assert api_source_ids(viewer, survey.slug, f="mag_r<13.5") == [f"OBJ{i:05d}" for i in range(27, 30)]
    both = viewer.get(f"/api/surveys/{survey.slug}/galaxies/?f=mag_r>15&f=label:elliptical")
    assert [g["source_id"] for g in both.json()["results"]] == [f"OBJ{i:05d}" for i in range(0, 20, 4)]
    assert api_source_ids(viewer, survey.slug, f="ra>150.275") == ["OBJ00028", "OBJ00029"]
    assert api_source_ids(viewer, survey.slug, f="mag_r=19.5") == ["OBJ00002"]


def test_filter_form_redirects_to_canonical_url(viewer, survey):
    response = viewer.get(f"/surveys/{survey.slug}/?sort=mag_r&key=mag_r&op=<&value=14")
    assert response.status_code == 302
    assert response["Location"] == f"/surveys/{survey.slug}/?sort=mag_r&f=mag_r%3C14"
    page = viewer.get(response["Location"])
    assert [f["text"] for f in page.context["active_filters"]] == ["mag_r<14"]
    assert page.context["page"].paginator.count == 5


@pytest.mark.parametrize("query", ["f=label<3", "f=mag_r>abc", "f=bad", "f=a__b:1", "sort=nokey", "per=0", "per=x"])
def test_bad_grid_queries_are_400(viewer, survey, query):
    assert viewer.get(f"/api/surveys/{survey.slug}/galaxies/?{query}").status_code == 400
    page = viewer.get(f"/surveys/{survey.slug}/?{query}")
    assert page.status_code == 400 and page.context["error"]


def test_unknown_survey_and_galaxy_are_404(viewer, survey):
    assert viewer.get("/surveys/nope/").status_code == 404
    assert viewer.get("/api/surveys/nope/galaxies/").status_code == 404
    assert viewer.get("/galaxies/999999/").status_code == 404
    assert viewer.get("/api/galaxies/999999/").status_code == 404
    assert viewer.get("/thumbs/999999.png").status_code == 404


def test_truth_never_reaches_html_or_json(viewer, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=3)
    urls = ["/surveys/", f"/surveys/{survey.slug}/", f"/galaxies/{galaxy.pk}/", "/api/surveys/",
            f"/api/surveys/{survey.slug}/galaxies/", f"/api/galaxies/{galaxy.pk}/"]
    for url in urls:
        body = viewer.get(url).content.decode()
        assert "TRUTH-SECRET" not in body and "true_class" not in body, url
    assert "truth" not in viewer.get(f"/api/galaxies/{galaxy.pk}/").json()


def test_detail_page_shows_position_metadata_bands_and_neighbours(viewer):
    survey = make_survey(n=5, size=16, viewer_url_template="https://viewer.example/?ra={ra}&dec={dec}")
    g = {x.image_index: x for x in Galaxy.objects.filter(survey=survey)}
    response = viewer.get(f"/galaxies/{g[2].pk}/")
    assert response.status_code == 200
    ctx = response.context
    assert (ctx["prev_url"], ctx["next_url"]) == (f"/galaxies/{g[1].pk}/", f"/galaxies/{g[3].pk}/")
    assert (ctx["ra_hms"], ctx["dec_dms"]) == ("10:00:04.80", "+01:58:48.0")  # 150.02°, 1.98°
    assert [b["name"] for b in ctx["bands"]] == ["g", "r", "i"]
    html = response.content.decode()
    assert "https://viewer.example/?ra=150.02&amp;dec=1.98" in html and "mag_r" in html
    assert 'id="detail-extras"' in html
    assert viewer.get(f"/galaxies/{g[0].pk}/").context["prev_url"] == ""


def test_detail_keeps_grid_context_for_back_link(viewer, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=0)
    response = viewer.get(f"/galaxies/{galaxy.pk}/", {"grid": "sort=mag_r&page=2"})
    assert response.context["back_url"] == f"/surveys/{survey.slug}/?sort=mag_r&page=2"
    plain = viewer.get(f"/galaxies/{Galaxy.objects.get(survey=survey, image_index=29).pk}/")
    assert plain.context["back_url"] == f"/surveys/{survey.slug}/?page=1"


def test_detail_panels_plug_into_extras(viewer, survey, monkeypatch):
    from webapp.catalog import views
    panel = lambda request, galaxy: {"template": "catalog/_panel.html", "context": {  # noqa: E731
        "title": "Nearest neighbours", "rows": [("closest", f"near {galaxy.source_id}")]}}
    monkeypatch.setattr(views, "DETAIL_PANELS", [panel, lambda request, galaxy: None])
    galaxy = Galaxy.objects.get(survey=survey, image_index=1)
    html = viewer.get(f"/galaxies/{galaxy.pk}/").content.decode()
    assert "Nearest neighbours" in html and "near OBJ00001" in html


def test_thumbnail_headers_etag_and_304(viewer, survey):
    galaxy = Galaxy.objects.get(survey=survey, image_index=4)
    response = viewer.get(f"/thumbs/{galaxy.pk}.png?size=64&v=abc")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "public, max-age=86400"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    again = viewer.get(f"/thumbs/{galaxy.pk}.png?size=64", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and again.content == b""
    band = viewer.get(f"/thumbs/{galaxy.pk}.png?band=1")
    assert band.status_code == 200 and band["ETag"] != response["ETag"]


@pytest.mark.parametrize("query", ["size=0", "size=4096", "size=big", "band=7", "band=q"])
def test_bad_thumbnail_params_are_400(viewer, survey, query):
    galaxy = Galaxy.objects.get(survey=survey, image_index=0)
    assert viewer.get(f"/thumbs/{galaxy.pk}.png?{query}").status_code == 400


def test_thumbnail_of_survey_without_store_is_404(viewer, survey):
    survey.store_abspath.unlink()
    from webapp.catalog.services import store_cache
    store_cache.close_all()
    galaxy = Galaxy.objects.get(survey=survey, image_index=0)
    assert viewer.get(f"/thumbs/{galaxy.pk}.png").status_code == 404


def test_api_lists_surveys_and_galaxy_detail(viewer, survey):
    data = viewer.get("/api/surveys/").json()["surveys"]
    assert [(s["slug"], s["n_galaxies"], s["bands"]) for s in data] == [("test", 30, ["g", "r", "i"])]
    galaxy = Galaxy.objects.get(survey=survey, image_index=7)
    detail = viewer.get(f"/api/galaxies/{galaxy.pk}/").json()
    assert (detail["source_id"], detail["metadata"], detail["ra_hms"]) == ("OBJ00007", {"label": "merger", "mag_r": 18.25}, "10:00:16.80")
    page = viewer.get(f"/api/surveys/{survey.slug}/galaxies/?per=10&page=3").json()
    assert (page["count"], page["page"], page["num_pages"], len(page["results"])) == (30, 3, 3, 10)
    assert page["metadata_keys"] == {"label": "text", "mag_r": "number"}


def test_grid_query_count_does_not_grow_with_page_size(viewer):
    survey = make_survey(n=60, size=16)
    counts = []
    for per in (5, 60):
        with CaptureQueriesContext(connection) as ctx:
            assert viewer.get(f"/surveys/{survey.slug}/?per={per}&sort=mag_r&f=mag_r<30").status_code == 200
        counts.append(len(ctx))
    assert counts[0] == counts[1]
    with CaptureQueriesContext(connection) as ctx:
        viewer.get(f"/api/surveys/{survey.slug}/galaxies/?per=60")
    api_small = len(ctx)
    assert api_small <= counts[0]


def test_survey_list_query_count_does_not_grow_with_surveys(viewer):
    make_survey(slug="a", name="A", n=10, size=16)
    with CaptureQueriesContext(connection) as one:
        viewer.get("/surveys/")
    make_survey(slug="b", name="B", n=10, size=16)
    make_survey(slug="c", name="C", n=10, size=16)
    with CaptureQueriesContext(connection) as three:
        viewer.get("/surveys/")
    assert len(one) == len(three)


def test_curator_can_queue_prerender_job_viewer_cannot(role_clients, survey):
    from webapp.jobs.models import Job
    assert role_clients["viewer"].post(f"/surveys/{survey.slug}/prerender").status_code == 403
    response = role_clients["curator"].post(f"/surveys/{survey.slug}/prerender")
    job = Job.objects.get(kind="render_thumbnails")
    assert response.status_code == 302 and job.params == {"survey_id": survey.pk}


def test_admin_lists_and_previews_galaxies(client, django_user_model, survey):
    admin_user = django_user_model.objects.create_superuser("root", "r@example.org", "pw")
    client.force_login(admin_user)
    galaxy = Galaxy.objects.get(survey=survey, image_index=2)
    listing = client.get("/admin/catalog/galaxy/?q=OBJ00002")
    assert listing.status_code == 200 and f"/thumbs/{galaxy.pk}/composite-96-" in listing.content.decode()
    change = client.get(f"/admin/catalog/galaxy/{galaxy.pk}/change/")
    assert change.status_code == 200 and f"/thumbs/{galaxy.pk}/composite-192-" in change.content.decode()
    survey_page = client.get(f"/admin/catalog/survey/{survey.pk}/change/")
    assert survey_page.status_code == 200 and survey.image_checksum in survey_page.content.decode()
    assert client.get("/admin/catalog/survey/?q=test").status_code == 200


def test_viewer_link_by_object_id_needs_no_position(db):
    survey = make_survey(name="ids", n=2, size=16, slug="ids-only",
                         viewer_url_template="https://cas.sdss.org/dr7/en/tools/explore/obj.asp?id={source_id}")
    galaxy = Galaxy.objects.filter(survey=survey).first()
    galaxy.ra = galaxy.dec = None
    assert survey.viewer_url(galaxy) == f"https://cas.sdss.org/dr7/en/tools/explore/obj.asp?id={galaxy.source_id}"
    positional = make_survey(name="pos", n=2, size=16, slug="pos", viewer_url_template="https://v.example/?ra={ra}&dec={dec}")
    assert positional.viewer_url(galaxy) == ""
