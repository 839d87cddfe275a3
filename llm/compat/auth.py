"""Who is calling: a Parley API key or a JWT as ``Authorization: Bearer``, or, for the
Anthropic Messages API, a key in ``x-api-key`` — the one authenticator every API uses
(``accounts.api.authentication.credentials_authenticate``), its refusals in gateway terms."""

from django.http import HttpRequest
from rest_framework import exceptions

from accounts.api.authentication import credentials_authenticate
from accounts.models import ApiKey, User
from llm.compat.core import GatewayError


def _refused(message: str) -> GatewayError:
    return GatewayError(401, "authentication", message, code="invalid_api_key")


def caller_authenticate(
    request: HttpRequest, *, x_api_key: bool = False
) -> tuple[User, ApiKey | None]:
    """The caller and the API key they used (None for a JWT), or a 401."""
    try:
        found = credentials_authenticate(request, x_api_key=x_api_key)
    except exceptions.AuthenticationFailed as exc:
        detail = (
            exc.detail.get("detail", exc.detail) if isinstance(exc.detail, dict) else exc.detail
        )
        raise _refused(str(detail)) from None
    if found is not None:
        return found
    where = (
        "Authorization: Bearer <key> or x-api-key" if x_api_key else "Authorization: Bearer <key>"
    )
    raise _refused(f"No credentials: send a Parley API key (or an access token) as {where}.")
