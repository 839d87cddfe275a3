"""Both credentials arrive as ``Authorization: Bearer <credential>``: API keys are told apart
by their ``prl_`` prefix, everything else is treated as a JWT. DRF views use these classes
(``DEFAULT_AUTHENTICATION_CLASSES``); views outside DRF (``/v1/``, reply streams) use the same
classes through ``credentials_authenticate``."""

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication as _JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import ApiKey, User
from accounts.selectors import api_key_usable, user_by_id
from accounts.services import API_KEY_PREFIX, api_key_touch


def _bearer_credential(request: Request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        credential = _bearer_credential(request)
        if credential is None or not credential.startswith(API_KEY_PREFIX):
            return None
        return self.authenticate_secret(credential)

    def authenticate_secret(self, secret: str) -> tuple[User, ApiKey]:
        """The owner of a usable key ``secret``, or ``AuthenticationFailed``."""
        api_key = api_key_usable(secret=secret)
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid, expired or revoked API key.", code="invalid_api_key"
            )
        api_key_touch(api_key=api_key)
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class JWTAuthentication(_JWTAuthentication):
    """simplejwt's, skipping API keys so they get ApiKeyAuthentication's error."""

    def authenticate(self, request: Request):
        credential = _bearer_credential(request)
        if credential is not None and credential.startswith(API_KEY_PREFIX):
            return None
        return super().authenticate(request)

    def get_user(self, validated_token):
        """simplejwt's checks, with the user from the per-process cache (invalidated in every
        process when a user is saved: deactivation and password changes end access at once)."""
        if api_settings.USER_ID_CLAIM not in validated_token:
            raise InvalidToken("Token contained no recognizable user identification")
        user = user_by_id(user_id=validated_token[api_settings.USER_ID_CLAIM])
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(
                "The user's password has been changed.", code="password_changed"
            )
        return user


def request_api_key(request: Request) -> ApiKey | None:
    """The API key a request was authenticated with (DRF puts it in ``request.auth``), or
    None for a JWT, so spend and limits can be counted per key."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiKey) else None


AUTHENTICATORS = (ApiKeyAuthentication(), JWTAuthentication())


def credentials_authenticate(
    request: HttpRequest, *, x_api_key: bool = False
) -> tuple[User, ApiKey | None] | None:
    """The caller of a plain Django view, by the same rules as every DRF view: the user and
    the API key they used (None for a JWT); with ``x_api_key`` a key may also come as
    ``x-api-key`` (Anthropic's header). None when the request carries no credentials;
    ``AuthenticationFailed`` for bad ones. Sets ``request.user`` and ``request.auth`` (the
    access log and stream revocation read them)."""
    drf_request = Request(request)
    found = None
    for authenticator in AUTHENTICATORS:
        found = authenticator.authenticate(drf_request)
        if found is not None:
            break
    if found is None and x_api_key and request.headers.get("x-api-key"):
        found = AUTHENTICATORS[0].authenticate_secret(request.headers["x-api-key"])
    if found is None:
        return None
    user, credential = found
    api_key = credential if isinstance(credential, ApiKey) else None
    request.user, request.auth = user, api_key
    return user, api_key
