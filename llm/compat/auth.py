"""Who is calling: a Parley API key or a JWT as ``Authorization: Bearer`` (accounts' own
authentication classes), or, for the Anthropic Messages API, a key in ``x-api-key``."""

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request

from accounts.api.authentication import ApiKeyAuthentication, JWTAuthentication
from accounts.models import ApiKey, User
from accounts.selectors import api_key_usable
from accounts.services import api_key_touch
from llm.compat.core import GatewayError

AUTHENTICATORS = (ApiKeyAuthentication(), JWTAuthentication())


def _refused(message: str) -> GatewayError:
    return GatewayError(401, "authentication", message, code="invalid_api_key")


def caller_authenticate(
    request: HttpRequest, *, x_api_key: bool = False
) -> tuple[User, ApiKey | None]:
    """The caller and the API key they used (None for a JWT), or a 401."""
    drf_request = Request(request)
    try:
        for authenticator in AUTHENTICATORS:
            result = authenticator.authenticate(drf_request)
            if result is not None:
                user, credential = result
                return user, credential if isinstance(credential, ApiKey) else None
    except exceptions.AuthenticationFailed as exc:
        detail = (
            exc.detail.get("detail", exc.detail) if isinstance(exc.detail, dict) else exc.detail
        )
        raise _refused(str(detail)) from None
    secret = request.headers.get("x-api-key") if x_api_key else None
    if secret:
        api_key = api_key_usable(secret=secret)
        if api_key is None:
            raise _refused("Invalid, expired or revoked API key.")
        api_key_touch(api_key=api_key)
        return api_key.owner, api_key
    where = (
        "Authorization: Bearer <key> or x-api-key" if x_api_key else "Authorization: Bearer <key>"
    )
    raise _refused(f"No credentials: send a Parley API key (or an access token) as {where}.")
