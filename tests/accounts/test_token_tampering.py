"""Forged, expired and revoked JWTs are refused with 401 in the error shape."""

import base64
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User

pytestmark = pytest.mark.django_db


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def me(client, token):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/auth/me/")


def test_valid_token_is_accepted(api_client, user):
    assert me(api_client, str(AccessToken.for_user(user))).status_code == 200


def test_wrong_signature(api_client, user):
    payload = AccessToken.for_user(user).payload
    forged = jwt.encode(payload, "not-the-signing-key-but-long-enough-0123", algorithm="HS256")
    response = me(api_client, forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_alg_none(api_client, user):
    payload = dict(AccessToken.for_user(user).payload)
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."
    assert me(api_client, unsigned).status_code == 401


def test_signed_with_secret_key_instead_of_jwt_signing_key(api_client, user):
    assert settings.SIMPLE_JWT["SIGNING_KEY"] != settings.SECRET_KEY
    payload = dict(AccessToken.for_user(user).payload)
    assert (
        me(api_client, jwt.encode(payload, settings.SECRET_KEY, algorithm="HS256")).status_code
        == 401
    )


def test_expired(api_client, user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    response = me(api_client, str(token))
    assert response.status_code == 401


def test_refresh_token_is_not_an_access_token(api_client, user):
    assert me(api_client, str(RefreshToken.for_user(user))).status_code == 401


def test_blacklisted_refresh_cannot_be_used(api_client, user):
    refresh = RefreshToken.for_user(user)
    refresh.blacklist()
    response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": str(refresh)})
    assert response.status_code == 401


def test_inactive_users_access_token_is_refused(api_client, user):
    token = str(AccessToken.for_user(user))
    User.objects.filter(pk=user.pk).update(is_active=False)
    response = me(api_client, token)
    assert response.status_code == 401


def test_malformed_header(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer")
    assert api_client.get("/api/v1/auth/me/").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert api_client.get("/api/v1/auth/me/").status_code == 401


def signed(token_type: str, **claims) -> str:
    """A token signed with the real key, as a holder of the key (or a bug) could mint it."""
    now = int(time.time())
    payload = {"token_type": token_type, "exp": now + 600, "iat": now, "jti": uuid.uuid4().hex}
    return jwt.encode(payload | claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


NOT_A_USER_ID = [
    [1],
    {"id": 1},
    True,
    1.5,
    "1.5",
    "01",
    " 1",
    "\u0661",  # an Arabic-Indic digit one
    "abc",
    None,
    0,
    -1,
    "-1",
    2**63,
    str(2**63),
    10**30,
]


@pytest.mark.parametrize("user_id", NOT_A_USER_ID, ids=repr)
class TestUserClaimThatIsNotAnId:
    def test_access_token_is_401(self, api_client, user, user_id):
        response = me(api_client, signed("access", user_id=user_id))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_not_valid"

    def test_refresh_is_401_and_issues_nothing(self, api_client, user, user_id):
        response = api_client.post(
            "/api/v1/auth/token/refresh/", {"refresh": signed("refresh", user_id=user_id)}
        )
        assert response.status_code == 401
        assert "access" not in response.json()

    def test_verify_is_401(self, api_client, user, user_id):
        for kind in ("access", "refresh"):
            response = api_client.post(
                "/api/v1/auth/token/verify/", {"token": signed(kind, user_id=user_id)}
            )
            assert response.status_code == 401

    def test_logout_is_401(self, api_client, user, user_id):
        response = api_client.post(
            "/api/v1/auth/logout/", {"refresh": signed("refresh", user_id=user_id)}
        )
        assert response.status_code == 401


def test_a_well_formed_user_claim_still_works(api_client, user):
    assert me(api_client, signed("access", user_id=str(user.pk))).status_code == 200
    assert me(api_client, signed("access", user_id=user.pk)).status_code == 200
