"""Search pages, the galaxy-page neighbours panel and the search JSON API: results and every 400/404."""
import io

import numpy as np
import pytest
from astropy.io import fits
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.catalog.models import Galaxy
from webapp.embeddings.services import search
from webapp.embeddings.services.vectors import load_embedding_set

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fresh():
    search.forget_cached_indexes()
    from webapp.embeddings.services import sky
    sky.forget_cached_positions()


@pytest.fixture
def es():
    vectors, _ = clustered_vectors(30, 8, clusters=3)
    return make_embedding_set(vectors=vectors, n=30)


@pytest.fixture
def viewer(role_clients):
    return role_clients["viewer"]


def gids(es):
    return [int(g) for g in load_embedding_set(es)[0]]


def test_galaxy_page_shows_twelve_neighbours_with_distances_and_links(viewer, es):
    g = gids(es)[4]
    html = viewer.get(f"/galaxies/{g}/").content.decode()
    assert "Similar galaxies" in html and f'href="/search/?galaxy={g}&set={es.pk}"' in html
    expected = search.nearest(es, g, 12)
    for r in expected:
        assert f'href="/galaxies/{r["id"]}/"' in html
    assert html.count('class="dist"') == 12
    assert f'{expected[0]["distance"]:.3f}' in html


def test_galaxy_page_without_embedding_set_has_no_panel(viewer):
    from tests.catalog.factories import make_survey
    s = make_survey(n=3)
    html = viewer.get(f"/galaxies/{Galaxy.objects.filter(survey=s).first().pk}/").content.decode()
    assert "Similar galaxies" not in html


def test_search_page_by_galaxy_source_and_ids(viewer, es):
    ids = gids(es)
    r = viewer.get(f"/search/?galaxy={ids[0]}&k=5")
    assert r.status_code == 200
    cells = r.content.decode().count('class="cell result"')
    assert cells == 5
    src = Galaxy.objects.get(pk=ids[0]).source_id
    r2 = viewer.get(f"/search/?source={src}&k=5")
    assert r2.status_code == 200 and r2.content.decode().count('class="cell result"') == 5
    r3 = viewer.get(f"/search/?ids={ids[0]},{ids[3]}&k=7")
    assert r3.status_code == 200 and "More like these 2" in r3.content.decode()
    assert r3.content.decode().count('class="cell result"') == 7


@pytest.mark.parametrize("query,status,message", [
    ("galaxy=999999", 404, "galaxy 999999 does not exist"),
    ("source=NOPE", 404, "no galaxy with source id or id"),
    ("galaxy=abc", 400, "galaxy must be a numeric id"),
    ("ra=400&dec=0", 400, "RA 400 is out of range"),
    ("ra=10&dec=-91", 400, "Dec -91 is out of range"),
    ("ra=ten&dec=2", 400, "cannot read RA"),
    ("ids=1,x", 400, "ids must be comma-separated"),
    ("ids=99999999999999999999999", 400, "positive 64-bit integers"),
    ("k=0&ids=1", 400, "k must be between"),
])
def test_search_page_bad_input(viewer, es, query, status, message):
    r = viewer.get(f"/search/?{query}")
    assert r.status_code == status
    assert message in r.content.decode()


def test_api_neighbours_json_and_errors(viewer, es):
    lm = make_latent_map(es)
    g = gids(es)[2]
    data = viewer.get(f"/api/search/neighbours/{g}?k=4&map={lm.pk}").json()
    assert data["galaxy"]["id"] == g and data["embedding_set"]["id"] == es.pk
    assert [r["id"] for r in data["results"]] == [r["id"] for r in search.nearest(es, g, 4)]
    assert all({"distance", "thumb_url", "url", "source_id", "x", "y"} <= set(r) for r in data["results"])
    assert viewer.get("/api/search/neighbours/999999").status_code == 404
    assert viewer.get(f"/api/search/neighbours/{g}?set=999").json() == {"error": "embedding set 999 does not exist"}
    assert viewer.get(f"/api/search/neighbours/{g}?k=100000").status_code == 400


def test_api_sky_finds_nearest_catalogue_object(viewer, es):
    g = Galaxy.objects.get(pk=gids(es)[7])
    data = viewer.get(f"/api/search/sky?ra={g.ra + 1 / 3600}&dec={g.dec}&k=3").json()
    assert data["match"]["id"] == g.pk
    assert data["match"]["separation_arcsec"] == pytest.approx(np.cos(np.radians(g.dec)), rel=1e-3)
    assert len(data["results"]) == 3
    far = viewer.get(f"/api/search/sky?ra={(g.ra + 10) % 360}&dec={g.dec}")
    assert far.status_code == 404 and "no galaxy within 60″" in far.json()["error"]
    assert viewer.get("/api/search/sky?ra=-1&dec=0").status_code == 400
    hms = viewer.get("/api/search/sky?ra=10:00:02.4&dec=%2B01:59:24&max_sep=5").json()
    assert hms["match"]["source_id"] == "OBJ00001"  # RA 150.01, Dec 1.99


def test_api_galaxies_refuses_out_of_range_ids(viewer, es):
    r = viewer.get("/api/search/galaxies?ids=99999999999999999999999")
    assert r.status_code == 400 and "positive 64-bit" in r.json()["error"]


def test_api_similar(viewer, es):
    ids = gids(es)
    data = viewer.get(f"/api/search/similar?ids={ids[0]},{ids[3]}&k=6").json()
    assert len(data["results"]) == 6 and not {ids[0], ids[3]} & {r["id"] for r in data["results"]}
    assert viewer.get("/api/search/similar").status_code == 400
    assert viewer.get(f"/api/search/similar?ids={ids[0]}&mode=magic").status_code == 400


def fits_upload(n_bands=3, size=16, name="q.fits"):
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(np.ones((size, size), np.float32), name=b) for b in "gri"[:n_bands]]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return SimpleUploadedFile(name, buf.getvalue(), content_type="application/fits")


def test_api_upload_embeds_with_the_set_encoder_and_stores_nothing(viewer, es, monkeypatch, settings):
    from webapp.embeddings.services import encoding
    vectors = load_embedding_set(es)[1]
    seen = {}

    def fake_embed(encoder, images):
        seen["encoder"], seen["shape"] = encoder.pk, images.shape
        return np.asarray(vectors[5:6]) * 2.0
    monkeypatch.setattr(encoding, "embed_images", fake_embed)
    before = sorted(p.name for p in settings.DATA_DIR.rglob("*"))
    r = viewer.post("/api/search/upload", {"image": fits_upload(), "k": 4})
    assert r.status_code == 200, r.content
    data = r.json()
    assert seen == {"encoder": es.encoder_id, "shape": (1, 3, 16, 16)}
    assert data["results"][0]["id"] == gids(es)[5] and data["format"] == "FITS"
    assert sorted(p.name for p in settings.DATA_DIR.rglob("*")) == before  # nothing stored


@pytest.mark.parametrize("upload,message", [
    (lambda: fits_upload(n_bands=1), "wrong number of bands"),
    (lambda: SimpleUploadedFile("x.png", b"\x89PNG\r\n\x1a\nbroken"), "upload a FITS cutout"),
    (lambda: SimpleUploadedFile("x.txt", b"just text"), "not a FITS, PNG or JPEG"),
    (lambda: None, "no file was uploaded"),
])
def test_api_upload_bad_files_are_400(viewer, es, upload, message):
    f = upload()
    r = viewer.post("/api/search/upload", {"image": f} if f else {})
    assert r.status_code == 400 and message in r.json()["error"]


def test_upload_over_the_limit_is_refused(viewer, es, settings):
    settings.MAX_UPLOAD_BYTES = 4096
    r = viewer.post("/api/search/upload", {"image": SimpleUploadedFile("big.fits", b"SIMPLE  =" + b" " * 9000)})
    assert r.status_code == 400 and "uploads are limited to 4 kB" in r.json()["error"]


def test_upload_page_shows_preview_and_results(viewer, es, monkeypatch):
    from webapp.embeddings.services import encoding
    vectors = load_embedding_set(es)[1]
    monkeypatch.setattr(encoding, "embed_images", lambda enc, images: np.asarray(vectors[:1]))
    r = viewer.post("/search/", {"image": fits_upload(), "set": es.pk, "k": 6})
    html = r.content.decode()
    assert r.status_code == 200 and "data:image/png;base64," in html
    assert html.count('class="cell result"') == 6
    bad = viewer.post("/search/", {"image": fits_upload(n_bands=2), "set": es.pk})
    assert bad.status_code == 400 and "wrong number of bands" in bad.content.decode()


def test_api_requires_login(es):
    from django.test import Client
    assert Client().get(f"/api/search/neighbours/{gids(es)[0]}").status_code == 401
