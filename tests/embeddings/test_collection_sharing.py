"""Teams: collections shared with a group or everyone, read-only or editable; the list shows whose."""
import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tests.catalog.factories import make_survey
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import Collection

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def ids():
    make_survey(n=10)
    return list(Galaxy.objects.order_by("id").values_list("id", flat=True))


@pytest.fixture
def team(make_user):
    """alice and bob in team "lenses"; carol outside it.  One logged-in client each."""
    lenses = Group.objects.create(name="lenses")
    people = {}
    for name in ("alice", "bob", "carol"):
        user = make_user("labeler", name)
        if name != "carol":
            user.groups.add(lenses)
        client = Client()
        client.force_login(user)
        people[name] = client
    return people


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def make_collection(client, ids, name="Rings"):
    return post(client, "/api/collections/", {"name": name, "galaxy_ids": ids[:3]}).json()["collection"]["id"]


def names(client):
    return [(c["name"], c["owner"]) for c in client.get("/api/collections/").json()["collections"]]


def test_sharing_with_a_group_shows_it_to_the_group_only_read_only(team, ids):
    cid = make_collection(team["alice"], ids)
    r = post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "group", "group": "lenses"})
    assert r.status_code == 200 and (r.json()["shared_with"], r.json()["group"], r.json()["editable"]) == (
        "group", "lenses", False)
    assert names(team["bob"]) == [("Rings", "alice")]
    assert names(team["carol"]) == []
    assert team["carol"].get(f"/api/collections/{cid}/").status_code == 404
    detail = team["bob"].get(f"/api/collections/{cid}/").json()
    assert (detail["owner"], detail["can_edit"], detail["mine"], len(detail["galaxy_ids"])) == ("alice", False, False, 3)
    # read-only: view and export, but no add, remove, rename, delete, share
    assert team["bob"].get(f"/collections/{cid}/").status_code == 200
    assert team["bob"].get(f"/collections/{cid}/export.csv").status_code == 200
    for url, body in ((f"/api/collections/{cid}/add", {"galaxy_ids": ids[5:6]}),
                      (f"/api/collections/{cid}/remove", {"galaxy_ids": ids[:1]}),
                      (f"/api/collections/{cid}/delete", {}),
                      (f"/api/collections/{cid}/share", {"shared_with": "everyone"})):
        assert post(team["bob"], url, body).status_code == 403, url
    assert team["bob"].post(f"/collections/{cid}/rename", {"name": "Mine now"}).status_code == 403
    assert team["bob"].post(f"/collections/{cid}/remove", {"galaxy_ids": ids[:1]}).status_code == 403
    assert team["bob"].post(f"/collections/{cid}/delete").status_code == 403
    c = Collection.objects.get(pk=cid)
    assert (c.name, c.galaxies.count()) == ("Rings", 3)


def test_editable_sharing_lets_members_add_remove_rename_but_not_delete(team, ids):
    cid = make_collection(team["alice"], ids)
    post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "group", "group": "lenses", "editable": True})
    assert post(team["bob"], f"/api/collections/{cid}/add", {"galaxy_ids": ids[5:7]}).json()["added"] == 2
    assert post(team["bob"], f"/api/collections/{cid}/remove", {"galaxy_ids": ids[:1]}).json()["removed"] == 1
    assert team["bob"].post(f"/collections/{cid}/rename", {"name": "Rings v2"}).status_code == 302
    assert post(team["bob"], f"/api/collections/{cid}/delete", {}).status_code == 403
    c = Collection.objects.get(pk=cid)
    assert (c.name, c.owner.username, c.galaxies.count()) == ("Rings v2", "alice", 4)


def test_sharing_with_everyone_and_back_to_private(team, ids):
    cid = make_collection(team["alice"], ids)
    post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "everyone"})
    assert names(team["carol"]) == [("Rings", "alice")]
    post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "none", "editable": True})
    assert names(team["carol"]) == [] and names(team["bob"]) == []
    assert Collection.objects.get(pk=cid).editable is False


@pytest.mark.parametrize("body,message", [
    ({"shared_with": "group"}, "name the group"),
    ({"shared_with": "group", "group": "nope"}, "not in a group"),
    ({"shared_with": "friends"}, "shared_with"),
])
def test_bad_sharing_requests_are_400(team, ids, body, message):
    cid = make_collection(team["alice"], ids)
    r = post(team["alice"], f"/api/collections/{cid}/share", body)
    assert r.status_code == 400 and message in r.json()["error"]
    assert Collection.objects.get(pk=cid).shared_with == "none"


def test_a_group_you_are_not_in_cannot_be_shared_with(team, ids, make_user):
    Group.objects.create(name="other-team")
    cid = make_collection(team["alice"], ids)
    r = post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "group", "group": "other-team"})
    assert r.status_code == 400


def test_list_page_shows_owners_and_the_share_form_only_to_the_owner(team, ids):
    cid = make_collection(team["alice"], ids)
    make_collection(team["bob"], ids, name="Bobs")
    team["alice"].post(f"/collections/{cid}/share", {"shared_with": "group", "group": "lenses"})
    page = team["bob"].get("/collections/").content.decode()
    assert "by <strong>alice</strong> · read-only" in page and "yours · shared with only me" in page
    assert 'id="share-menu"' not in team["bob"].get(f"/collections/{cid}/").content.decode()
    owner_page = team["alice"].get(f"/collections/{cid}/").content.decode()
    assert 'id="share-menu"' in owner_page and "group lenses (read-only)" in owner_page


def test_shared_collection_list_is_a_constant_number_of_queries(team, ids, django_assert_max_num_queries):
    for i in range(4):
        cid = make_collection(team["alice"], ids, name=f"C{i}")
        post(team["alice"], f"/api/collections/{cid}/share", {"shared_with": "everyone"})
    with django_assert_max_num_queries(6):
        assert len(team["carol"].get("/api/collections/").json()["collections"]) == 4
