"""Throttles whose counters live in Redis, so every server process shares them.

``UserRateThrottle`` is DRF's (a per-user history in the cache). The counters below are
windows in Redis changed by one atomic script per hit, so any number of processes racing on
one counter never let more through than its limit: a window starts at its first hit and lasts
the rate's period, and a client refused is told (``Retry-After``) when it ends."""

import hashlib
import logging
from dataclasses import dataclass

import redis
from rest_framework import throttling
from rest_framework.request import Request
from rest_framework.settings import api_settings

from project.redis import redis_client

logger = logging.getLogger("parley.throttling")
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# One round trip: count the hit, and give a new window its expiry (a counter never outlives
# its period, even one created by a refund racing the expiry).
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""
# A refund touches only a live window: an expired one stays gone.
_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECRBY', KEYS[1], ARGV[1])
end
return 0
"""


class _LiveRatesMixin:
    """Reads the rate when the throttle is built, not at import, so settings changes apply."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


def _not_applied(scope: str) -> None:
    # Throttles fail open: an unreachable Redis must not stop sign-ins and posts (budgets, in
    # the database, still cap spend). Logged, so operators see limits were not applied.
    logger.warning("Throttle %s not applied: Redis unavailable", scope)


class UserRateThrottle(_LiveRatesMixin, throttling.UserRateThrottle):
    """Per-user default rate (per IP for anonymous requests); open while Redis is down."""

    scope = "user"

    def allow_request(self, request: Request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except redis.RedisError:
            _not_applied(self.scope)
            return True


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    period_seconds: int


def rate_for(scope: str) -> Rate | None:
    """The configured rate of ``scope`` ("10/hour"), or None when it has none (no limit)."""
    text = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    if not text:
        return None
    number, period = text.split("/")
    return Rate(limit=int(number), period_seconds=PERIODS[period.strip()[0]])


@dataclass(frozen=True, slots=True)
class WindowHit:
    scope: str
    key: str
    count: int
    rate: Rate
    retry_after: float  # seconds until the window ends

    @property
    def exceeded(self) -> bool:
        return self.count > self.rate.limit

    def refund(self) -> None:
        """Take this hit back (it turned out not to count, e.g. a login that succeeded)."""
        if not self.counted:
            return
        try:
            redis_client().eval(_REFUND, 1, self.key, 1)
        except redis.RedisError:
            _not_applied(self.scope)

    @property
    def counted(self) -> bool:
        return self.count > 0


def window_hit(*, scope: str, ident: str, rate: Rate) -> WindowHit:
    """Count one hit against ``ident``'s current window of ``scope``, atomically. With Redis
    unreachable nothing is counted (``count`` 0): the throttle fails open."""
    # Hashed: identities may be emails or addresses, which have no business in Redis keys.
    digest = hashlib.sha256(f"{scope}\0{ident}".encode()).hexdigest()[:32]
    key = f"parley:throttle:{scope}:{digest}"
    try:
        count, ttl_ms = redis_client().eval(_HIT, 1, key, 1, rate.period_seconds * 1000)
    except redis.RedisError:
        _not_applied(scope)
        return WindowHit(scope=scope, key=key, count=0, rate=rate, retry_after=0)
    return WindowHit(
        scope=scope, key=key, count=int(count), rate=rate, retry_after=int(ttl_ms) / 1000
    )


def client_ip(request: Request) -> str:
    """The client's address as throttles see it (honouring NUM_PROXIES)."""
    return throttling.BaseThrottle().get_ident(request)


class WindowRateThrottle(throttling.BaseThrottle):
    """A DRF throttle over ``window_hit``: ``scope`` names the rate, ``identity`` whom it
    counts (None: this request is not counted)."""

    scope = ""

    def identity(self, request: Request, view) -> str | None:
        return client_ip(request)

    def allow_request(self, request: Request, view) -> bool:
        self._wait: float | None = None
        rate = rate_for(self.scope)
        ident = self.identity(request, view) if rate is not None else None
        if ident is None:
            return True
        hit = window_hit(scope=self.scope, ident=ident, rate=rate)
        if hit.exceeded:
            self._wait = hit.retry_after
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
