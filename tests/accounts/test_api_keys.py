"""API key lifecycle: create (secret shown once), use as a bearer token, list, revoke, expire."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from conftest import PASSWORD
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db


def create_key(client, **body):
    response = client.post("/api/v1/auth/api-keys/", {"name": "laptop", **body})
    assert response.status_code == 201, response.content
    return response.json()


def call_me(api_client, key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api_client.get("/api/v1/auth/me/")


def test_create_returns_the_secret_once_and_stores_only_a_hash(auth_client):
    body = create_key(auth_client)
    assert set(body) >= {"id", "name", "prefix", "key", "created_at", "expires_at"}
    assert body["key"].startswith(f"prl_{body['prefix']}_")
    stored = ApiKey.objects.get(pk=body["id"])
    assert body["key"] not in {stored.key_hash, stored.prefix}
    assert len(stored.key_hash) == 64

    listed = auth_client.get("/api/v1/auth/api-keys/").json()
    assert listed["count"] == 1
    assert "key" not in listed["results"][0]
    assert body["key"] not in str(listed)
    assert "key" not in auth_client.get(f"/api/v1/auth/api-keys/{body['id']}/").json()


def test_key_authenticates_as_its_owner(auth_client, api_client, user):
    key = create_key(auth_client)["key"]
    response = call_me(api_client, key)
    assert response.status_code == 200
    assert response.json()["email"] == user.email


def test_last_used_is_recorded_without_a_write_per_request(auth_client, api_client, settings):
    body = create_key(auth_client)
    assert ApiKey.objects.get(pk=body["id"]).last_used_at is None
    call_me(api_client, body["key"])
    first_use = ApiKey.objects.get(pk=body["id"]).last_used_at
    assert first_use is not None
    call_me(api_client, body["key"])
    assert ApiKey.objects.get(pk=body["id"]).last_used_at == first_use  # within the resolution

    settings.API_KEY_LAST_USED_RESOLUTION = timedelta(0)  # as if the resolution had passed
    call_me(api_client, body["key"])
    assert ApiKey.objects.get(pk=body["id"]).last_used_at > first_use


def test_revoked_key_stops_working(auth_client, api_client):
    body = create_key(auth_client)
    assert auth_client.delete(f"/api/v1/auth/api-keys/{body['id']}/").status_code == 204
    response = call_me(api_client, body["key"])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    listed = auth_client.get("/api/v1/auth/api-keys/").json()["results"][0]
    assert listed["revoked_at"] is not None


def test_expired_key_stops_working(auth_client, api_client):
    body = create_key(auth_client, expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    assert call_me(api_client, body["key"]).status_code == 200
    key = ApiKey.objects.get(pk=body["id"])  # saved as staff would (the admin, a shell)
    key.created_at = timezone.now() - timedelta(hours=2)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    assert call_me(api_client, body["key"]).status_code == 401


def test_expiry_in_the_past_is_refused(auth_client):
    response = auth_client.post(
        "/api/v1/auth/api-keys/",
        {"name": "old", "expires_at": (timezone.now() - timedelta(days=1)).isoformat()},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_expiry"
    assert not ApiKey.objects.exists()


def test_wrong_secret_with_a_real_prefix_is_refused(auth_client, api_client):
    body = create_key(auth_client)
    forged = f"prl_{body['prefix']}_{'A' * 43}"
    assert call_me(api_client, forged).status_code == 401


def test_inactive_owner_key_is_refused(auth_client, api_client, user):
    key = create_key(auth_client)["key"]
    user.is_active = False
    user.save()
    assert call_me(api_client, key).status_code == 401


def test_another_users_key_is_404(auth_client, other_client):
    body = create_key(auth_client)
    assert other_client.get(f"/api/v1/auth/api-keys/{body['id']}/").status_code == 404
    response = other_client.delete(f"/api/v1/auth/api-keys/{body['id']}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert ApiKey.objects.get(pk=body["id"]).revoked_at is None
    assert other_client.get("/api/v1/auth/api-keys/").json()["count"] == 0


def test_name_is_required_and_bounded(auth_client):
    assert auth_client.post("/api/v1/auth/api-keys/", {}).status_code == 400
    assert auth_client.post("/api/v1/auth/api-keys/", {"name": "x" * 101}).status_code == 400


def test_list_queries_do_not_grow_with_rows(auth_client, user):
    for i in range(2):
        create_key(auth_client, name=f"k{i}")
    few = queries_for_get(auth_client, "/api/v1/auth/api-keys/")
    for i in range(20):
        create_key(auth_client, name=f"more{i}")
    assert queries_for_get(auth_client, "/api/v1/auth/api-keys/") == few


class TestAnApiKeyCannotManageCredentials:
    """A leaked key must not outlive its revocation: it can mint no keys and change no password."""

    @pytest.fixture
    def key_client(self, auth_client, api_client):
        body = create_key(auth_client)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
        api_client.key_id = body["id"]
        return api_client

    def assert_jwt_required(self, response):
        assert response.status_code == 403, response.content
        error = response.json()["error"]
        assert error["code"] == "jwt_required"
        assert "API key" in error["message"]

    def test_cannot_create_list_read_or_revoke_keys(self, key_client):
        self.assert_jwt_required(key_client.post("/api/v1/auth/api-keys/", {"name": "more"}))
        self.assert_jwt_required(key_client.get("/api/v1/auth/api-keys/"))
        self.assert_jwt_required(key_client.get(f"/api/v1/auth/api-keys/{key_client.key_id}/"))
        self.assert_jwt_required(key_client.delete(f"/api/v1/auth/api-keys/{key_client.key_id}/"))
        assert ApiKey.objects.count() == 1
        assert ApiKey.objects.get().revoked_at is None

    def test_cannot_change_the_password(self, key_client, user):
        response = key_client.post(
            "/api/v1/auth/password/",
            {"current_password": PASSWORD, "new_password": "a-brand-new-passphrase"},
        )
        self.assert_jwt_required(response)
        user.refresh_from_db()
        assert user.check_password(PASSWORD)

    def test_once_revoked_the_key_has_no_access_left(self, key_client, auth_client):
        assert key_client.get("/api/v1/auth/me/").status_code == 200  # it still works as a key
        auth_client.delete(f"/api/v1/auth/api-keys/{key_client.key_id}/")
        assert key_client.get("/api/v1/auth/me/").status_code == 401
        assert key_client.post("/api/v1/auth/api-keys/", {"name": "x"}).status_code == 401

    def test_the_schema_offers_only_jwt_for_credential_management(self, api_client):
        schema = api_client.get("/api/schema/?format=json").json()
        for path, method in [
            ("/api/v1/auth/api-keys/", "post"),
            ("/api/v1/auth/api-keys/", "get"),
            ("/api/v1/auth/api-keys/{id}/", "delete"),
            ("/api/v1/auth/password/", "post"),
        ]:
            assert schema["paths"][path][method]["security"] == [{"jwtAuth": []}]
        assert {"apiKeyAuth": []} in schema["paths"]["/api/v1/auth/me/"]["get"]["security"]
