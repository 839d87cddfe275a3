"""Sign-in through the identity provider: mozilla-django-oidc's authorization-code flow (PKCE,
nonce, state), with endpoints from discovery, a full ID token check, and Parley's own rules
(sso.services) deciding who comes in."""

import hmac

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from project.db import connection_give_back
from project.errors import SignInRefused
from sso import services
from sso.discovery import provider_metadata


def _refused(message: str, code: str) -> SignInRefused:
    return SignInRefused(message, code=code)


# The most specific match wins: PyJWT's errors subclass one another.
TOKEN_REFUSALS: list[tuple[type[jwt.PyJWTError], str, str]] = [
    (
        jwt.ExpiredSignatureError,
        "The identity provider's ID token has expired; please sign in again.",
        "id_token_expired",
    ),
    (
        jwt.InvalidIssuerError,
        "The ID token was issued by another issuer than the configured provider.",
        "id_token_wrong_issuer",
    ),
    (
        jwt.InvalidAudienceError,
        "The ID token was issued for another application (wrong audience).",
        "id_token_wrong_audience",
    ),
    (
        jwt.InvalidSignatureError,
        "The ID token's signature does not match the provider's keys.",
        "id_token_bad_signature",
    ),
]


def _token_refusal(exc: jwt.PyJWTError) -> SignInRefused:
    for error_class, message, code in TOKEN_REFUSALS:
        if isinstance(exc, error_class):
            return _refused(message, code)
    return _refused(f"The ID token is not valid: {exc}.", "id_token_invalid")


class OIDCBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs) -> None:
        # No network and no required endpoint settings here: Django builds a backend for every
        # request that reads a signed-in session. Endpoints are discovered at sign-in.
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request, **kwargs):
        if not settings.OIDC_ISSUER or request is None or "code" not in request.GET:
            return None
        # The callback has read and saved the session by now; what follows waits on the
        # provider (discovery, token exchange, keys, userinfo) and touches no table until
        # sso_sign_in, so the connection goes back first: a slow provider must not pin one
        # per sign-in.
        connection_give_back()
        metadata = provider_metadata()
        self.OIDC_OP_TOKEN_ENDPOINT = metadata.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = metadata.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = metadata.jwks_uri
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs) -> dict:
        """Every check of OpenID Connect Core 3.1.3.7: signature by a key the provider publishes
        now, issuer, audience (and authorized party), expiry, and the nonce of this sign-in.
        The library itself checks only the signature and nonce."""
        nonce = kwargs.get("nonce")
        algorithm = self.OIDC_RP_SIGN_ALGO
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refused(
                "The identity provider's ID token is not a JWT.", "id_token_invalid"
            ) from None
        if header.get("alg") != algorithm:
            raise _refused(
                f"The ID token is signed with {header.get('alg')!r}, not {algorithm!r}.",
                "id_token_invalid",
            )
        if algorithm.startswith(("RS", "ES", "PS")):
            key = self.retrieve_matching_jwk(token)  # fetched now: follows key rotation
        else:
            key = self.OIDC_RP_CLIENT_SECRET
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.OIDC_ISSUER,
                leeway=settings.OIDC_CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise _token_refusal(exc) from None
        audiences = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise _refused(
                "The ID token was issued for another application (authorized party).",
                "id_token_wrong_audience",
            )
        if not isinstance(nonce, str) or not hmac.compare_digest(
            str(payload.get("nonce", "")), nonce
        ):
            raise _refused(
                "The ID token does not belong to this sign-in (its nonce differs); please "
                "sign in again.",
                "id_token_wrong_nonce",
            )
        return payload

    def retrieve_matching_jwk(self, token):
        try:
            return super().retrieve_matching_jwk(token)
        except SuspiciousOperation:
            raise _refused(
                "The ID token is signed with a key the identity provider does not publish.",
                "id_token_unknown_key",
            ) from None

    def get_userinfo(self, access_token, id_token, payload) -> dict:
        claims = super().get_userinfo(access_token, id_token, payload)
        # Core 5.3.2: the userinfo answer must be about the person the ID token names.
        if not isinstance(claims, dict) or claims.get("sub") != payload.get("sub"):
            raise _refused(
                "The identity provider's user information names another person than the ID token.",
                "userinfo_subject_mismatch",
            )
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        return services.sso_sign_in(claims=claims)

    def get_user(self, user_id):
        user = super().get_user(user_id)
        # A deactivated person's browser sessions end at their next request.
        return user if user is not None and self.user_can_authenticate(user) else None
