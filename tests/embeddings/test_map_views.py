"""Map pages and the map JSON/binary API: points, layers, density, mosaic, roles and bad input."""
import io

import numpy as np
import pytest
from PIL import Image

from tests.embeddings.map_factories import make_embedding_set, make_latent_map
from webapp.embeddings.models import LatentMap
from webapp.embeddings.services import colours, map_data, sky
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

N = 40


@pytest.fixture(autouse=True)
def _fresh():
    map_data.forget_cached_layers()
    sky.forget_cached_positions()
    yield
    map_data.forget_cached_layers()


@pytest.fixture
def lm():
    es = make_embedding_set(n=N)
    coords = np.stack([np.arange(N, dtype=np.float32) - 20, np.zeros(N, np.float32) + np.arange(N) % 5], axis=1)
    return make_latent_map(es, coords)


def coords_of(lm):
    from webapp.embeddings.services.maps import load_coords
    return load_coords(lm)


def parse_bin(response):
    fields = [f.split(":") for f in response["X-Fields"].split(",")]
    count, offset, out = int(response["X-Count"]), 0, {}
    for name, dtype in fields:
        out[name] = np.frombuffer(response.content, dtype="<" + dtype, count=count, offset=offset)
        offset += count * np.dtype(dtype).itemsize
    assert offset == len(response.content)
    return out


def test_map_page_renders_bokeh_figures_and_meta(role_clients, lm):
    r = role_clients["viewer"].get(f"/maps/{lm.pk}/")
    html = r.content.decode()
    assert r.status_code == 200
    assert 'id="map-meta"' in html and "/static/bokeh/static/js/bokeh-gl.min.js" in html and "/static/js/map.js" in html
    assert '"webgl"' in html  # output_backend of both figures
    assert html.count('<option value="meta:') == 2  # label and mag_r from the factory catalogue
    assert r.context["meta"]["default_layer"] == "meta:label" and r.context["meta"]["dense"] is False
    sky_page = role_clients["viewer"].get(f"/sky/{lm.pk}/")
    assert sky_page.status_code == 200 and sky_page.context["view"] == "sky"


def test_building_or_missing_map_is_404(role_clients, lm):
    LatentMap.objects.filter(pk=lm.pk).update(status="building")
    assert role_clients["viewer"].get(f"/maps/{lm.pk}/").status_code == 404
    assert role_clients["viewer"].get(f"/api/maps/{lm.pk}/points").status_code == 404
    assert role_clients["viewer"].get("/maps/99999/").status_code == 404


def test_points_binary_matches_coords_ids_and_positions(role_clients, lm):
    r = role_clients["viewer"].get(f"/api/maps/{lm.pk}/points?format=bin&layer=meta:mag_r")
    assert r["Content-Type"] == "application/octet-stream" and int(r["X-Total"]) == N
    pts = parse_bin(r)
    ids, _, _ = load_embedding_set(lm.embedding_set)
    np.testing.assert_array_equal(pts["row"], np.arange(N))
    np.testing.assert_array_equal(pts["id"], ids)
    np.testing.assert_array_equal(np.stack([pts["x"], pts["y"]], 1), coords_of(lm))
    assert pts["ra"][3] == pytest.approx(150.03) and pts["dec"][3] == pytest.approx(1.97)
    np.testing.assert_allclose(pts["c"], [20.0 - 0.25 * i for i in range(N)])  # factory mag_r


def test_points_in_a_box_and_capped_views_are_stable_samples(role_clients, lm):
    c = role_clients["viewer"]
    inside = c.get(f"/api/maps/{lm.pk}/points?bbox=-5.5,-1,4.5,10&fields=row,x").json()
    assert inside["total"] == 10 and inside["points"]["row"] == list(range(15, 25))
    capped = c.get(f"/api/maps/{lm.pk}/points?format=bin&limit=7&fields=row")
    again = c.get(f"/api/maps/{lm.pk}/points?format=bin&limit=7&fields=row")
    rows = parse_bin(capped)["row"]
    assert len(rows) == 7 and int(capped["X-Total"]) == N
    np.testing.assert_array_equal(rows, parse_bin(again)["row"])
    paged = [c.get(f"/api/maps/{lm.pk}/points?limit=15&offset={o}&fields=row").json() for o in (0, 15, 30)]
    assert sorted(sum((p["points"]["row"] for p in paged), [])) == list(range(N))
    assert [p["next_offset"] for p in paged] == [15, 30, None]


@pytest.mark.parametrize("query,message", [
    ("bbox=1,2,3", "bbox must be four numbers"),
    ("bbox=0,0,0,5", "non-zero width"),
    ("limit=0", "limit must be at least 1"),
    ("limit=abc", "limit must be an integer"),
    ("fields=x,colour", "unknown field(s) ['colour']"),
    ("format=xml", "format must be"),
    ("layer=nope&fields=c", "unknown colour layer 'nope'"),
])
def test_points_bad_input_is_400(role_clients, lm, query, message):
    r = role_clients["viewer"].get(f"/api/maps/{lm.pk}/points?{query}")
    assert r.status_code == 400 and message in r.json()["error"]


def test_layers_menu_legends_and_a_registered_provider(role_clients, lm):
    def fake_scores(es):
        return [colours.ColourLayer("anomaly", "Anomaly score", "numeric", np.linspace(0, 1, es.n), group="Anomalies")]
    colours.register_colour_provider(fake_scores)
    try:
        c = role_clients["viewer"]
        menu = c.get(f"/api/maps/{lm.pk}/layers").json()
        assert [m["key"] for m in menu["layers"]] == ["survey", "meta:label", "meta:mag_r", "anomaly"]
        label = c.get(f"/api/maps/{lm.pk}/layers?key=meta:label").json()
        assert label["kind"] == "categorical" and sorted(label["categories"]) == ["edge-on", "elliptical", "merger", "spiral"]
        assert label["counts"] == [10, 10, 10, 10] and label["missing"] == 0
        score = c.get(f"/api/maps/{lm.pk}/layers?key=anomaly").json()
        assert score["kind"] == "numeric" and score["low"] == pytest.approx(0.02) and score["high"] == pytest.approx(0.98)
        pts = parse_bin(c.get(f"/api/maps/{lm.pk}/points?format=bin&fields=c&layer=anomaly"))
        np.testing.assert_allclose(pts["c"], np.linspace(0, 1, N), atol=1e-6)
        codes = parse_bin(c.get(f"/api/maps/{lm.pk}/points?format=bin&fields=c&layer=meta:label"))["c"]
        assert set(codes.tolist()) == {0.0, 1.0, 2.0, 3.0}
    finally:
        colours._PROVIDERS.remove(fake_scores)


def test_density_png_and_json_count_every_point(role_clients, lm):
    c = role_clients["viewer"]
    counts = c.get(f"/api/maps/{lm.pk}/density?format=json&bins=16").json()
    assert np.sum(counts["counts"]) == N
    png = c.get(f"/api/maps/{lm.pk}/density?bins=64")
    img = Image.open(io.BytesIO(png.content))
    assert png["Content-Type"] == "image/png" and img.mode == "RGBA" and img.size[0] == 64
    assert (np.asarray(img)[..., 3] > 0).sum() >= 30  # distinct points light distinct pixels
    sky_counts = c.get(f"/api/maps/{lm.pk}/density?format=json&bins=8&space=sky").json()
    assert np.sum(sky_counts["counts"]) == N
    assert c.get(f"/api/maps/{lm.pk}/density?space=moon").status_code == 400


def test_mosaic_picks_the_point_nearest_each_cell_centre_and_renders(role_clients, lm):
    c = role_clients["viewer"]
    grid = c.get(f"/api/maps/{lm.pk}/mosaic?format=json&bbox=-20,0,20,5&cells=8").json()
    assert (grid["nx"], grid["ny"], grid["cell"]) == (8, 1, 5.0)
    ids, _, row_of = load_embedding_set(lm.embedding_set)
    xy = coords_of(lm)
    for cell in grid["cells"]:
        centre = np.array([-20 + 5 * cell["ix"] + 2.5, 2.5])
        in_cell = [r for r in range(N) if -20 + 5 * cell["ix"] <= xy[r, 0] < -15 + 5 * cell["ix"] and xy[r, 1] < 5]
        best = min(in_cell, key=lambda r: np.sum((xy[r] - centre) ** 2))
        assert row_of[cell["id"]] == best
    jpeg = c.get(f"/api/maps/{lm.pk}/mosaic?bbox=-20,0,20,5&cells=8&tile=32")
    img = Image.open(io.BytesIO(jpeg.content))
    assert jpeg["Content-Type"] == "image/jpeg" and img.size == (8 * 32, 32)
    assert np.asarray(img).mean() > 20  # thumbnails, not just the dark background


def test_launching_map_and_index_jobs_needs_curator(role_clients, lm):
    es = lm.embedding_set
    for role in ("viewer", "labeler"):
        assert role_clients[role].post("/maps/launch", {"embedding_set_id": es.pk}).status_code == 403
        assert role_clients[role].post("/maps/build-index", {"embedding_set_id": es.pk}).status_code == 403
    assert not Job.objects.exists()
    r = role_clients["curator"].post("/maps/launch", {"embedding_set_id": es.pk})
    assert r.status_code == 302
    r = role_clients["curator"].post("/maps/build-index", {"embedding_set_id": es.pk})
    assert sorted(Job.objects.values_list("kind", "params__embedding_set_id")) == [("build_index", es.pk), ("umap", es.pk)]
    assert role_clients["curator"].post("/maps/launch", {"embedding_set_id": 999}).status_code == 404


def test_map_home_lists_sets_maps_and_running_jobs(role_clients, lm, django_assert_max_num_queries):
    from webapp.jobs.services import create_job
    create_job("umap", {"embedding_set_id": lm.embedding_set_id}, dispatch=False)
    with django_assert_max_num_queries(12):
        r = role_clients["viewer"].get("/maps/")
    html = r.content.decode()
    assert f'href="/maps/{lm.pk}/"' in html and 'data-job-id=' in html
    assert "Compute map" not in html and "Recompute map" not in html  # viewers cannot launch
    assert "Recompute map" in role_clients["curator"].get("/maps/").content.decode()


def test_api_needs_login(lm):
    from django.test import Client
    for url in (f"/api/maps/{lm.pk}/points", "/api/maps/", f"/api/maps/{lm.pk}/density"):
        assert Client().get(url).status_code == 401


def test_sky_positions_are_cached_on_disk_and_refreshed_after_a_reingest(settings, lm):
    from webapp.catalog.models import Galaxy, Survey
    es = lm.embedding_set
    first = sky.sky_index(es)
    files = list((settings.DATA_DIR / es.vectors_path).parent.glob("catalogue-*.npz"))
    assert len(files) == 1
    g = Galaxy.objects.get(pk=int(load_embedding_set(es)[0][0]))
    Galaxy.objects.filter(pk=g.pk).update(ra=10.0)
    sky.forget_cached_positions()
    assert sky.sky_index(es).ra[0] == pytest.approx(first.ra[0])  # same catalogue signature: the file is trusted
    Survey.objects.get(pk=g.survey_id).save()  # a re-ingest touches the survey row
    sky.forget_cached_positions()
    assert sky.sky_index(es).ra[0] == 10.0
    assert len(list(files[0].parent.glob("catalogue-*.npz"))) == 1  # the stale file was replaced


@pytest.mark.parametrize("url", ["/maps/", "/search/", "/collections/"])
def test_top_navigation_marks_the_map_area(role_clients, url):
    r = role_clients["viewer"].get(url)
    active = [item["label"] for item in r.context["nav_items"] if item["active"]]
    assert active == ["Map"]


@pytest.mark.parametrize("query", ["collection=abc", "collection=99999999999999999999999", "focus=x", "view=moon",
                                   "backend=vulkan"])
def test_odd_page_parameters_are_ignored(role_clients, lm, query):
    r = role_clients["viewer"].get(f"/maps/{lm.pk}/?{query}")
    assert r.status_code == 200 and r.context["meta"]["collection_ids"] == [] and r.context["meta"]["focus"] is None


def test_a_failing_colour_provider_does_not_break_the_map(role_clients, lm):
    def broken(es):
        raise RuntimeError("provider bug")
    colours.register_colour_provider(broken)
    try:
        r = role_clients["viewer"].get(f"/api/maps/{lm.pk}/layers")
        assert r.status_code == 200 and "survey" in [m["key"] for m in r.json()["layers"]]
        assert role_clients["viewer"].get(f"/maps/{lm.pk}/").status_code == 200
    finally:
        colours._PROVIDERS.remove(broken)
