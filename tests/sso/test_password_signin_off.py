"""PASSWORD_SIGNIN_ENABLED=false closes every password door at once (the admin, the
self-service page, the REST token endpoint) and leaves single sign-on and API keys."""

import pytest
from django.test import Client

from accounts.services import api_key_create
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def password_off(settings):
    settings.PASSWORD_SIGNIN_ENABLED = False
    settings.OIDC_ISSUER = "https://idp.acme.example"
    settings.OIDC_PROVIDER_NAME = "Acme ID"


def test_the_rest_token_endpoint_refuses_a_right_password_with_a_clear_error(
    password_off, api_client, user
):
    response = api_client.post(
        "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "password_signin_disabled"


def test_the_admin_offers_only_single_sign_on_and_refuses_a_password(password_off, staff_user):
    client = Client()
    page = client.get("/admin/login/?next=/admin/")
    assert "Sign in with Acme ID" in page.text and 'name="password"' not in page.text
    client.post("/admin/login/?next=/admin/", {"username": staff_user.email, "password": PASSWORD})
    assert client.get("/admin/").status_code == 302  # still sent to sign in


def test_the_self_service_page_refuses_a_password_and_says_why(password_off, user):
    client = Client()
    page = client.get("/account/login/")
    assert "Sign in with Acme ID" in page.text and 'name="password"' not in page.text
    refused = client.post("/account/login/", {"username": user.email, "password": PASSWORD})
    assert "Password sign-in is turned off" in refused.text
    assert client.get("/account/").status_code == 302


def test_api_keys_keep_working_when_password_sign_in_is_off(password_off, api_client, user):
    issued = api_key_create(owner=user, name="ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert api_client.get("/api/v1/auth/me/").status_code == 200


def test_with_passwords_on_the_page_signs_in_with_one(settings, user):
    settings.OIDC_ISSUER = ""
    client = Client()
    page = client.get("/account/login/")
    assert 'name="password"' in page.text and "Sign in with" not in page.text
    response = client.post("/account/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert user.email in client.get("/account/").text
