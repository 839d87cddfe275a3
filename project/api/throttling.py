"""Throttles whose counters live in the Redis cache, so every server process shares them."""

from rest_framework import throttling


class UserRateThrottle(throttling.UserRateThrottle):
    """Per-user default rate (per IP for anonymous requests)."""

    scope = "user"


class AuthRateThrottle(throttling.SimpleRateThrottle):
    """Login, refresh and registration, counted per client IP whoever the caller claims to be."""

    scope = "auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
