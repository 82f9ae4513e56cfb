"""SAMP links: signed, absolute, 10-minute URLs that TOPCAT fetches without a session; tables
sent back become galaxies of a map (by id or by RA/Dec); the sky view's HiPS overlay data."""
import io
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import from_table, parse_single_table
from astropy.table import Table
from django.core import signing
from django.test import Client

from tests.catalog.factories import make_survey
from tests.embeddings.map_factories import clustered_vectors, make_embedding_set, make_latent_map
from webapp.embeddings.models import Collection
from webapp.embeddings.services.vectors import load_embedding_set
from webapp.embeddings.services import hips
from webapp.interop import links

pytestmark = [pytest.mark.integration]


@pytest.fixture
def world(db, make_user):
    survey = make_survey(name="SDSS DR17 sample", slug="sdss-dr17", n=30, size=16)
    vectors, labels = clustered_vectors(30, 8, clusters=3)
    es = make_embedding_set(survey=survey, vectors=vectors)
    lm = make_latent_map(es, (np.random.default_rng(0).normal(size=(30, 2)) * 4).astype(np.float32))
    ids = [int(i) for i in load_embedding_set(es)[0]]
    owner = make_user("viewer", "olga")
    client = Client()
    client.force_login(owner)
    return {"survey": survey, "es": es, "lm": lm, "ids": ids, "owner": owner, "client": client}


def link(client, **spec):
    response = client.post("/samp/link", data=json.dumps(spec), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def fetch_anonymously(url: str):
    assert url.startswith("http://testserver/samp/t/")
    return Client().get(url.replace("http://testserver", ""))


def test_selection_link_serves_a_votable_without_login(world):
    chosen = world["ids"][3:9]
    reply = link(world["client"], kind="ids", galaxy_ids=list(reversed(chosen)))
    assert (reply["mtype"], reply["ids"], reply["expires_in"]) == ("table.load.votable", chosen, 600)
    response = fetch_anonymously(reply["url"])
    assert response.status_code == 200 and response["Content-Type"] == "application/x-votable+xml"
    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert table["galaxy_id"].tolist() == chosen
    assert np.allclose(table["ra"], [150.0 + 0.01 * (g - world["ids"][0]) for g in chosen])
    fields = {f.name: f.ucd for f in parse_single_table(io.BytesIO(response.content)).fields}
    assert fields["ra"] == "pos.eq.ra;meta.main" and fields["dec"] == "pos.eq.dec;meta.main"


def test_tampered_and_expired_links_are_refused(world):
    reply = link(world["client"], kind="ids", galaxy_ids=world["ids"][:2])
    token = reply["url"].split("/samp/t/")[1].split("/")[0]
    forged = signing.dumps({"k": "ids", "d": links.pack_ids(world["ids"])}, salt="another-salt", compress=True)
    assert Client().get(f"/samp/t/{forged}/x.vot").status_code == 403
    assert Client().get(f"/samp/t/{token[:-2]}xx/x.vot").status_code == 403
    with pytest.raises(links.LinkError, match="expired"):
        links.unsign(token, max_age=-1)


def test_collection_link_is_for_its_owner_only(world, make_user):
    c = Collection.objects.create(owner=world["owner"], name="mergers")
    c.galaxies.set(world["ids"][:4])
    reply = link(world["client"], kind="collection", id=c.pk)
    assert reply["ids"] == world["ids"][:4] and reply["name"] == "Latent Sky collection mergers"
    table = parse_single_table(io.BytesIO(fetch_anonymously(reply["url"]).content)).to_table()
    assert table["galaxy_id"].tolist() == world["ids"][:4]
    other = Client()
    other.force_login(make_user("viewer", "eve"))
    response = other.post("/samp/link", data=json.dumps({"kind": "collection", "id": c.pk}), content_type="application/json")
    assert response.status_code == 404


def test_cutout_link_serves_fits_with_a_wcs(world):
    gid = world["ids"][5]
    reply = link(world["client"], kind="cutout", id=gid)
    assert reply["mtype"] == "image.load.fits"
    with fits.open(io.BytesIO(fetch_anonymously(reply["url"]).content)) as hdus:
        header, data = hdus[0].header, hdus[0].data
    assert data.shape == (3, 16, 16) and header["LS_ID"] == gid
    assert (header["CTYPE1"], header["CRVAL1"], header["CRVAL2"]) == ("RA---TAN", pytest.approx(150.05), pytest.approx(1.95))


def test_bad_link_requests_are_400(world):
    assert world["client"].post("/samp/link", data="nope", content_type="application/json").status_code == 400
    for spec in ({"kind": "what"}, {"kind": "ids", "galaxy_ids": []}, {"kind": "ids", "galaxy_ids": ["x"]}):
        assert world["client"].post("/samp/link", data=json.dumps(spec), content_type="application/json").status_code == 400
    assert Client().post("/samp/link", data="{}", content_type="application/json").status_code == 302  # login first


def votable_bytes(columns: dict) -> bytes:
    out = io.BytesIO()
    from_table(Table(columns)).to_xml(out)
    return out.getvalue()


def test_a_table_sent_back_by_id_becomes_galaxies_of_the_map(world):
    wanted = world["ids"][10:14]
    body = votable_bytes({"galaxy_id": np.array(wanted + [999999], dtype=np.int64), "x": np.arange(5.0)})
    response = world["client"].post(f"/samp/rows?set={world['es'].pk}", data=body, content_type="application/x-votable+xml")
    assert response.json() == {"ids": wanted, "rows": 5, "matched": 4, "by": "galaxy_id"}


def test_a_table_sent_back_with_only_ra_dec_is_cross_matched(world):
    first = world["ids"][0]
    picks = [2, 7, 20]
    ra = [150.0 + 0.01 * i + 0.3 / 3600 for i in picks] + [10.0]   # 0.3" off, and one far away
    dec = [2.0 - 0.01 * i for i in picks] + [-40.0]
    body = votable_bytes({"RA_ICRS": np.array(ra), "DE_ICRS": np.array(dec), "name": np.array(["a", "b", "c", "d"])})
    # no UCDs: found by name (RA_ICRS / DE_ICRS are VizieR's)
    body = body.replace(b'name="DE_ICRS"', b'name="dec"')
    reply = world["client"].post(f"/samp/rows?set={world['es'].pk}", data=body,
                                 content_type="application/x-votable+xml").json()
    assert reply == {"ids": [first + i for i in picks], "rows": 4, "matched": 3, "by": "position"}


def test_rows_refuses_what_is_not_a_table(world):
    response = world["client"].post(f"/samp/rows?set={world['es'].pk}", data=b"<html/>", content_type="text/xml")
    assert response.status_code == 400 and "VOTable" in response.json()["error"]
    assert world["client"].post("/samp/rows?set=0", data=b"", content_type="text/xml").status_code == 400


def test_hips_mapping():
    class S:
        def __init__(self, slug, name, sim=False):
            self.slug, self.name, self.is_simulated = slug, name, sim
    assert hips.hips_for_survey(S("sdss-dr17", "SDSS DR17")) == "CDS/P/SDSS9/color"
    assert hips.hips_for_survey(S("des-y3", "DES wide")) == "CDS/P/DES-DR2/ColorIRG"
    assert hips.hips_for_survey(S("designer", "Designer galaxies")) is None   # a word, not a substring
    assert hips.hips_for_survey(S("sdss-sim", "Simulated SDSS", sim=True)) is None


def test_overlay_data_for_aladin(world):
    response = world["client"].get(f"/maps/{world['lm'].pk}/hips.json?layer=meta:label")
    data = response.json()
    assert data["hips"] == "CDS/P/SDSS9/color" and len(data["points"]) == 30
    by_id = {p["id"]: p for p in data["points"]}
    first = world["ids"][0]
    assert by_id[first + 4]["ra"] == pytest.approx(150.04) and by_id[first + 4]["dec"] == pytest.approx(1.96)
    # categorical colours: one palette colour per label, the same for the same label
    labels = {g.pk: g.metadata["label"] for g in world["survey"].galaxies.all()}
    colour_of_label = {}
    for p in data["points"]:
        assert colour_of_label.setdefault(labels[p["id"]], p["colour"]) == p["colour"]
    assert len(set(colour_of_label.values())) == len(colour_of_label) and all(c.startswith("#") for c in colour_of_label.values())
    assert data["center"] == [pytest.approx(150.145, abs=1e-3), pytest.approx(1.855, abs=1e-3)] and 0.3 < data["fov"] < 2
    assert world["client"].get(f"/maps/{world['lm'].pk}/hips.json?layer=nope").status_code == 400


def test_only_a_map_with_hips_imagery_allows_wasm(world, db):
    policy = world["client"].get(f"/maps/{world['lm'].pk}/")["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in policy and "https://alasky.cds.unistra.fr" in policy
    assert "http://127.0.0.1:21012" in policy and "'unsafe-eval'" not in policy
    sim = make_survey(name="Sim", slug="sim", n=10, size=16, is_simulated=True)
    es = make_embedding_set(survey=sim, vectors=clustered_vectors(10, 8, clusters=2)[0])
    lm = make_latent_map(es, np.random.default_rng(1).normal(size=(10, 2)).astype(np.float32))
    policy = world["client"].get(f"/maps/{lm.pk}/")["Content-Security-Policy"]
    assert "wasm" not in policy and "alasky" not in policy
