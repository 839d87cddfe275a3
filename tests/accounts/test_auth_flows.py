"""Register, log in, refresh, verify, log out, profile and password change, as a client sees them."""

import pytest
from django.test import override_settings

from accounts.models import User
from conftest import PASSWORD
from project.money import micros

pytestmark = pytest.mark.django_db


def login(client, email, password=PASSWORD):
    return client.post("/api/v1/auth/token/", {"email": email, "password": password})


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status
    assert error["message"]
    assert error["request_id"] == response["X-Request-ID"]
    if code:
        assert error["code"] == code
    return error


class TestRegister:
    def test_register_then_log_in_and_read_profile(self, api_client):
        response = api_client.post(
            "/api/v1/auth/register/",
            {
                "email": "New.Person@Example.com",
                "password": "a-long-unusual-passphrase",
                "name": "New",
            },
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["email"] == "new.person@example.com"
        assert "password" not in body

        tokens = login(api_client, "new.person@example.com", "a-long-unusual-passphrase").json()
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
        me = api_client.get("/api/v1/auth/me/").json()
        assert me["email"] == "new.person@example.com"
        assert me["budgets"] == []

    def test_email_already_taken_in_any_case(self, api_client, user):
        response = api_client.post(
            "/api/v1/auth/register/",
            {"email": user.email.upper(), "password": "another-long-passphrase"},
        )
        error = assert_error(response, 400, "email_taken")
        assert "email" in error["details"]
        assert User.objects.count() == 1

    def test_weak_password_is_refused_with_field_details(self, api_client):
        response = api_client.post(
            "/api/v1/auth/register/", {"email": "a@example.com", "password": "123"}
        )
        error = assert_error(response, 400, "weak_password")
        assert error["details"]["password"]
        assert not User.objects.exists()

    def test_invalid_email_is_a_validation_error(self, api_client):
        response = api_client.post(
            "/api/v1/auth/register/", {"email": "nope", "password": "x" * 20}
        )
        error = assert_error(response, 400, "validation_error")
        assert "email" in error["details"]

    @override_settings(REGISTRATION_OPEN=False)
    def test_registration_can_be_switched_off(self, api_client):
        response = api_client.post(
            "/api/v1/auth/register/",
            {"email": "a@example.com", "password": "a-long-unusual-passphrase"},
        )
        assert_error(response, 403, "registration_closed")
        assert not User.objects.exists()


class TestTokens:
    def test_wrong_password_is_401(self, api_client, user):
        assert_error(login(api_client, user.email, "wrong-password"), 401)

    def test_inactive_user_cannot_log_in(self, api_client, user):
        user.is_active = False
        user.save()
        assert_error(login(api_client, user.email), 401)

    def test_refresh_rotates_and_old_refresh_is_blacklisted(self, api_client, user):
        first = login(api_client, user.email).json()
        rotated = api_client.post("/api/v1/auth/token/refresh/", {"refresh": first["refresh"]})
        assert rotated.status_code == 200
        assert rotated.json()["refresh"] != first["refresh"]
        again = api_client.post("/api/v1/auth/token/refresh/", {"refresh": first["refresh"]})
        assert_error(again, 401, "token_not_valid")

    def test_inactive_user_cannot_refresh(self, api_client, user):
        tokens = login(api_client, user.email).json()
        User.objects.filter(pk=user.pk).update(is_active=False)
        response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
        assert_error(response, 401)

    def test_deleted_user_cannot_refresh(self, api_client, user):
        tokens = login(api_client, user.email).json()
        user.delete()
        response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
        assert_error(response, 401)

    def test_verify(self, api_client, user):
        tokens = login(api_client, user.email).json()
        assert (
            api_client.post("/api/v1/auth/token/verify/", {"token": tokens["access"]}).status_code
            == 200
        )
        tampered = tokens["access"][:-2] + ("AA" if not tokens["access"].endswith("AA") else "BB")
        assert_error(api_client.post("/api/v1/auth/token/verify/", {"token": tampered}), 401)

    def test_logout_blacklists_the_refresh_token(self, api_client, user):
        tokens = login(api_client, user.email).json()
        assert (
            api_client.post("/api/v1/auth/logout/", {"refresh": tokens["refresh"]}).status_code
            == 204
        )
        response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
        assert_error(response, 401)
        assert (
            api_client.post("/api/v1/auth/token/verify/", {"token": tokens["refresh"]}).status_code
            == 401
        )

    def test_logout_with_garbage_is_401(self, api_client):
        assert_error(api_client.post("/api/v1/auth/logout/", {"refresh": "not-a-token"}), 401)


class TestProfile:
    def test_me_requires_authentication(self, api_client):
        response = api_client.get("/api/v1/auth/me/")
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_patch_name(self, auth_client, user):
        response = auth_client.patch("/api/v1/auth/me/", {"name": "Ada"})
        assert response.status_code == 200
        assert response.json()["name"] == "Ada"
        user.refresh_from_db()
        assert user.name == "Ada"

    def test_patch_cannot_change_email_or_staff(self, auth_client, user):
        auth_client.patch("/api/v1/auth/me/", {"email": "x@example.com", "is_staff": True})
        user.refresh_from_db()
        assert user.email != "x@example.com" and not user.is_staff

    def test_patch_name_too_long(self, auth_client, user):
        error = assert_error(auth_client.patch("/api/v1/auth/me/", {"name": "x" * 151}), 400)
        assert "name" in error["details"]

    def test_budgets_show_limit_spent_reserved_remaining_and_reset(self, auth_client, user):
        from budgets.services import budget_reserve, budget_set

        budget_set(user=user, period="monthly", limit_tokens=5000, limit_micros=micros("2.50"))
        budget_reserve(user=user, amount_micros=micros("0.5"), amount_tokens=1200)
        [budget] = auth_client.get("/api/v1/auth/me/").json()["budgets"]
        assert budget["scope"] == "user" and budget["period"] == "monthly"
        assert (budget["limit_tokens"], budget["reserved_tokens"], budget["remaining_tokens"]) == (
            5000,
            1200,
            3800,
        )
        assert (budget["limit_usd"], budget["spent_usd"], budget["remaining_usd"]) == (
            "2.500000",
            "0.000000",
            "2.000000",
        )
        assert budget["resets_at"].endswith("T00:00:00Z")


class TestPasswordChange:
    def test_wrong_current_password(self, auth_client):
        response = auth_client.post(
            "/api/v1/auth/password/",
            {"current_password": "nope", "new_password": "a-brand-new-passphrase"},
        )
        error = assert_error(response, 400)
        assert "current_password" in error["details"]

    def test_every_earlier_refresh_token_stops_working(self, api_client, user):
        first = login(api_client, user.email).json()
        second = login(api_client, user.email).json()
        rotated = api_client.post(
            "/api/v1/auth/token/refresh/", {"refresh": second["refresh"]}
        ).json()
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access']}")
        response = api_client.post(
            "/api/v1/auth/password/",
            {"current_password": PASSWORD, "new_password": "a-brand-new-passphrase"},
        )
        assert response.status_code == 200, response.content
        fresh = response.json()
        api_client.credentials()
        for old in (first["refresh"], rotated["refresh"]):
            assert_error(api_client.post("/api/v1/auth/token/refresh/", {"refresh": old}), 401)
        assert (
            api_client.post(
                "/api/v1/auth/token/refresh/", {"refresh": fresh["refresh"]}
            ).status_code
            == 200
        )
        assert_error(login(api_client, user.email), 401)
        assert login(api_client, user.email, "a-brand-new-passphrase").status_code == 200

    def test_weak_new_password(self, auth_client):
        response = auth_client.post(
            "/api/v1/auth/password/", {"current_password": PASSWORD, "new_password": "short"}
        )
        assert "new_password" in assert_error(response, 400, "weak_password")["details"]
