"""The identity provider's endpoints, read from its discovery document
(``<OIDC_ISSUER>/.well-known/openid-configuration``) and kept for
``OIDC_DISCOVERY_CACHE_SECONDS``. Signing keys are not cached here: the backend fetches the
provider's JWKS at every sign-in, so a rotated key is picked up at once."""

import threading
import time
from dataclasses import dataclass

import requests
from django.conf import settings

from project.errors import SignInRefused, Unavailable


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_lock = threading.Lock()


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def provider_metadata() -> ProviderMetadata:
    """The configured provider's endpoints. Raises ``Unavailable`` when the provider cannot be
    reached, ``SignInRefused`` when its document names another issuer or lacks an endpoint
    (OpenID Connect Discovery 1.0, section 4.3)."""
    issuer = settings.OIDC_ISSUER
    with _lock:
        cached = _cache.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
    try:
        response = requests.get(discovery_url(issuer), timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError):
        raise Unavailable(
            "The identity provider cannot be reached right now; try again in a moment.",
            code="sso_provider_unavailable",
        ) from None
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise SignInRefused(
            "The identity provider's discovery document names another issuer than the one "
            "Parley is configured to trust (OIDC_ISSUER).",
            code="sso_issuer_mismatch",
        )
    fields = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
    if not all(isinstance(document.get(name), str) for name in fields):
        raise SignInRefused(
            "The identity provider's discovery document lacks an endpoint Parley needs.",
            code="sso_discovery_incomplete",
        )
    metadata = ProviderMetadata(issuer=issuer, **{name: document[name] for name in fields})
    with _lock:
        _cache[issuer] = (time.monotonic() + settings.OIDC_DISCOVERY_CACHE_SECONDS, metadata)
    return metadata


def provider_metadata_forget() -> None:
    """Read the discovery document again at the next sign-in."""
    with _lock:
        _cache.clear()
