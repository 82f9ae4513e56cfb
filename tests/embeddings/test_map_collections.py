"""Collections: per-user, idempotent adds, clear 400s, other users get 404, roles on every write."""

import pytest

from tests.catalog.factories import make_survey
from tests.http import post_json
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import Collection

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def ids():
    make_survey(n=10)
    return list(Galaxy.objects.order_by("id").values_list("id", flat=True))


def test_add_to_named_collection_creates_then_adds_idempotently(role_clients, ids):
    c = role_clients["viewer"]
    r = post_json(c, "/api/collections/", {"name": "  Rings  ", "galaxy_ids": ids[:4]})
    assert r.status_code == 201 and r.json()["added"] == 4 and r.json()["collection"]["name"] == "Rings"
    r = post_json(c, "/api/collections/", {"name": "Rings", "galaxy_ids": ids[2:6]})
    assert r.status_code == 200 and (r.json()["added"], r.json()["collection"]["count"], r.json()["created"]) == (2, 6, False)
    cid = r.json()["collection"]["id"]
    assert c.get(f"/api/collections/{cid}/").json()["galaxy_ids"] == ids[:6]
    assert [x["name"] for x in c.get("/api/collections/").json()["collections"]] == ["Rings"]
    r = post_json(c, f"/api/collections/{cid}/remove", {"galaxy_ids": ids[:2]})
    assert r.json()["removed"] == 2 and Collection.objects.get(pk=cid).galaxies.count() == 4
    r = post_json(c, f"/api/collections/{cid}/add", {"galaxy_ids": ids[9:]})
    assert r.json()["added"] == 1


@pytest.mark.parametrize("body,message", [
    ({"name": "", "galaxy_ids": "first"}, "give the collection a name"),
    ({"name": "x" * 121, "galaxy_ids": "first"}, "at most 120 characters"),
    ({"name": "A", "galaxy_ids": []}, "select at least one galaxy"),
    ({"name": "A", "galaxy_ids": "1,2"}, None),
    ({"name": "A", "galaxy_ids": ["a"]}, "galaxy_ids must be integers"),
    ({"name": "A", "galaxy_ids": [10**9, 10**9 + 1]}, "unknown galaxy id(s): 1000000000, 1000000001"),
    ({"name": "A", "galaxy_ids": [10**25]}, "positive 64-bit integers"),
    ({"name": "A", "galaxy_ids": [-3]}, "positive 64-bit integers"),
])
def test_bad_collection_requests_are_400_and_change_nothing(role_clients, ids, body, message):
    if body["galaxy_ids"] == "first":
        body = {**body, "galaxy_ids": ids[:1]}  # a real galaxy: only the name is wrong
    if body["galaxy_ids"] == "1,2":
        body["galaxy_ids"] = f"{ids[0]},{ids[1]}"  # a comma string is accepted too
        assert post_json(role_clients["viewer"], "/api/collections/", body).status_code == 201
        return
    r = post_json(role_clients["viewer"], "/api/collections/", body)
    assert r.status_code == 400 and message in r.json()["error"]
    assert not Collection.objects.exists()


def test_a_partly_unknown_batch_adds_nothing(role_clients, ids):
    r = post_json(role_clients["viewer"], "/api/collections/", {"name": "A", "galaxy_ids": [ids[0], 10**9]})
    assert r.status_code == 400 and not Collection.objects.exists()


def test_other_users_collections_are_invisible(role_clients, ids):
    mine = post_json(role_clients["viewer"], "/api/collections/", {"name": "Mine", "galaxy_ids": ids[:2]}).json()
    cid = mine["collection"]["id"]
    other = role_clients["labeler"]
    assert other.get(f"/api/collections/{cid}/").status_code == 404
    assert post_json(other, f"/api/collections/{cid}/add", {"galaxy_ids": ids[:1]}).status_code == 404
    assert post_json(other, f"/api/collections/{cid}/delete", {}).status_code == 404
    assert other.get(f"/collections/{cid}/").status_code == 404
    assert other.get("/api/collections/").json()["collections"] == []
    assert Collection.objects.get(pk=cid).galaxies.count() == 2


def test_users_without_a_role_cannot_write_and_anonymous_need_login(make_user, client, ids):
    client.force_login(make_user(None, "nobody"))
    r = post_json(client, "/api/collections/", {"name": "A", "galaxy_ids": ids[:1]})
    assert r.status_code == 403 and "viewer role" in r.json()["error"]
    from django.test import Client
    assert post_json(Client(), "/api/collections/", {"name": "A", "galaxy_ids": ids[:1]}).status_code == 401
    assert not Collection.objects.exists()


def test_collection_pages_rename_remove_export_delete(role_clients, ids):
    c = role_clients["viewer"]
    cid = post_json(c, "/api/collections/", {"name": "Mergers", "galaxy_ids": ids[:3]}).json()["collection"]["id"]
    listing = c.get("/collections/").content.decode()
    assert "Mergers" in listing and f"/collections/{cid}/" in listing
    page = c.get(f"/collections/{cid}/").content.decode()
    assert page.count('class="cell result"') == 3 and f"?ids={ids[0]},{ids[1]},{ids[2]}" in page
    c.post(f"/collections/{cid}/rename", {"name": "Major mergers"})
    c.post(f"/collections/{cid}/remove", {"galaxy_ids": [ids[0]]})
    csv_text = c.get(f"/collections/{cid}/export.csv").content.decode()
    assert csv_text.splitlines()[0] == "galaxy_id,survey,source_id,ra,dec"
    assert len(csv_text.splitlines()) == 3 and Collection.objects.get(pk=cid).name == "Major mergers"
    c.post(f"/collections/{cid}/delete")
    assert not Collection.objects.filter(pk=cid).exists()


def test_collection_opens_on_the_map_preselected(role_clients):
    from tests.embeddings.map_factories import make_embedding_set, make_latent_map
    es = make_embedding_set(n=12)
    lm = make_latent_map(es)
    ids = list(Galaxy.objects.order_by("id").values_list("id", flat=True))[:3]
    c = role_clients["viewer"]
    cid = post_json(c, "/api/collections/", {"name": "Trio", "galaxy_ids": ids}).json()["collection"]["id"]
    assert f'href="/maps/{lm.pk}/?collection={cid}"' in c.get(f"/collections/{cid}/").content.decode()
    meta = c.get(f"/maps/{lm.pk}/?collection={cid}").context["meta"]
    assert sorted(meta["collection_ids"]) == ids
    assert role_clients["labeler"].get(f"/maps/{lm.pk}/?collection={cid}").context["meta"]["collection_ids"] == []
