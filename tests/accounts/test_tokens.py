"""Personal API tokens: created once, hashed, revocable, read-only, /api/ only."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from webapp.accounts.models import ApiToken
from webapp.accounts.tokens import TokenRejected, check_token, create_token, revoke_token
from webapp.embeddings.models import Collection

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def post(client, url, body, **extra):
    return client.post(url, data=json.dumps(body), content_type="application/json", **extra)


def test_only_a_hash_is_stored_and_the_token_checks(make_user):
    user = make_user("viewer")
    token, plain = create_token(user, "laptop")
    scheme, prefix, secret = plain.split("_", 2)
    assert (scheme, prefix) == ("lsk", token.prefix)
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert check_token(plain).pk == token.pk
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize("plain,reason", [
    ("nonsense", "malformed"), ("lsk_abc", "malformed"), ("lsk_000000000000_wrong", "not valid")])
def test_bad_tokens_are_rejected_with_a_reason(make_user, plain, reason):
    create_token(make_user("viewer"), "t")
    with pytest.raises(TokenRejected, match=reason):
        check_token(plain)


def test_a_right_prefix_with_a_wrong_secret_is_rejected(make_user):
    _, plain = create_token(make_user("viewer"), "t")
    with pytest.raises(TokenRejected, match="not valid"):
        check_token(plain[:-3] + "xyz")


@pytest.mark.parametrize("name,days,message", [("", None, "name"), ("x" * 101, None, "100"), ("t", 0, "expiry")])
def test_create_token_validates(make_user, name, days, message):
    with pytest.raises(ValueError, match=message):
        create_token(make_user("viewer"), name, expires_in_days=days)


def test_a_token_calls_the_api_as_its_owner_without_csrf(make_user):
    user = make_user("viewer", "alice")
    _, plain = create_token(user, "script")
    client = Client(enforce_csrf_checks=True)
    assert client.get("/api/collections/", **bearer(plain)).status_code == 200
    response = post(client, "/api/collections/", {"name": "mine", "galaxy_ids": []}, **bearer(plain))
    assert response.status_code in (200, 201, 400), response.content
    # a session without the CSRF token is still refused
    session = Client(enforce_csrf_checks=True)
    session.force_login(user)
    assert post(session, "/api/collections/", {"name": "x", "galaxy_ids": []}).status_code == 403


def test_expired_and_revoked_tokens_get_401_with_the_reason(make_user):
    user = make_user("admin")
    expired, expired_plain = create_token(user, "old", expires_in_days=1)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_plain = create_token(user, "gone")
    revoke_token(user, revoked.pk)
    for plain, reason in ((expired_plain, "expired"), (revoked_plain, "revoked"), ("lsk_x_y", "not valid")):
        response = Client().get("/api/jobs/", **bearer(plain))
        assert response.status_code == 401
        assert reason in response.json()["error"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_read_only_tokens_may_read_but_not_write(make_user):
    _, plain = create_token(make_user("admin"), "ro", read_only=True)
    client = Client()
    assert client.get("/api/collections/", **bearer(plain)).status_code == 200
    response = post(client, "/api/collections/", {"name": "x", "galaxy_ids": []}, **bearer(plain))
    assert response.status_code == 403
    assert response.json() == {"error": "this token is read-only"}
    assert Collection.objects.count() == 0


def test_a_token_carries_the_owners_current_role(make_user):
    from django.contrib.auth.models import Group
    user = make_user("viewer")
    _, plain = create_token(user, "t")
    assert Client().post("/api/encoders/", data="{}", content_type="application/json",
                         **bearer(plain)).status_code == 403
    user.groups.add(Group.objects.get(name="curator"))
    assert Client().post("/api/encoders/", data="{}", content_type="application/json",
                         **bearer(plain)).status_code != 403


def test_pages_outside_the_api_do_not_accept_tokens(make_user):
    _, plain = create_token(make_user("admin"), "t")
    response = Client().get("/surveys/", **bearer(plain))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    response = Client().get("/accounts/", **bearer(plain))
    assert response.status_code == 302


def test_tokens_of_inactive_users_are_refused(make_user):
    user = make_user("admin")
    _, plain = create_token(user, "t")
    user.is_active = False
    user.save()
    assert Client().get("/api/jobs/", **bearer(plain)).status_code == 401


def test_account_page_creates_shows_once_and_revokes(role_clients):
    client = role_clients["viewer"]
    assert client.get("/accounts/").status_code == 200
    response = client.post("/accounts/tokens/new", {"name": "notebook", "read_only": "on", "expires_in_days": "30"})
    assert response.status_code == 200
    plain = response.context["new_token"]
    assert plain.startswith("lsk_") and plain in response.content.decode()
    token = ApiToken.objects.get()
    assert (token.name, token.read_only, token.expires_at is not None) == ("notebook", True, True)
    page = client.get("/accounts/").content.decode()
    assert plain not in page and f"lsk_{token.prefix}_" in page
    assert Client().get("/api/jobs/", **bearer(plain)).status_code == 200
    assert client.post(f"/accounts/tokens/{token.pk}/revoke").status_code == 302
    assert Client().get("/api/jobs/", **bearer(plain)).status_code == 401


def test_account_page_refuses_bad_input_and_other_peoples_tokens(role_clients, make_user):
    client = role_clients["viewer"]
    assert client.post("/accounts/tokens/new", {"name": ""}).status_code == 400
    assert client.post("/accounts/tokens/new", {"name": "t", "expires_in_days": "soon"}).status_code == 400
    other, _ = create_token(make_user("admin", "bob"), "bob's")
    client.post(f"/accounts/tokens/{other.pk}/revoke")
    other.refresh_from_db()
    assert other.revoked_at is None
