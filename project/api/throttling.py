"""Throttles whose counters live in the Redis cache, so every server process shares them."""

from rest_framework import throttling
from rest_framework.settings import api_settings


class _LiveRatesMixin:
    """Reads the rate when the throttle is built, not at import, so settings changes apply."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserRateThrottle(_LiveRatesMixin, throttling.UserRateThrottle):
    """Per-user default rate (per IP for anonymous requests)."""

    scope = "user"


class AuthRateThrottle(_LiveRatesMixin, throttling.SimpleRateThrottle):
    """Login, refresh and registration, counted per client IP whoever the caller claims to be."""

    scope = "auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
