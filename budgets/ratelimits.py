"""Requests and tokens per minute, per user and per API key, shared by every process.

Counters live in Redis as one hash per subject and dimension, keyed by the second (``rl:<subject>:r``
and ``rl:<subject>:t``, field = UNIX second, value = requests or tokens admitted in it). A
request is admitted when, for every subject that applies, the sum over the last 60 seconds
plus this request stays within the limit; the check and the increments are one Lua script, so
it is atomic across processes, and it reads Redis' own clock, so web servers with skewed
clocks still agree. A sliding minute (not a fixed one) means a burst straddling a minute
boundary still gets only ``limit`` requests, never twice that.

Tokens are counted when admitted, as the request's worst case (estimated input + max_tokens),
like OpenAI does. Answers carry OpenAI's headers (``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the ``-tokens`` ones);
a refusal is ``RateLimited`` (429) with ``Retry-After``."""

import logging
from dataclasses import dataclass, field

import redis
from django.conf import settings

from accounts.models import ApiKey, User
from budgets.selectors import rate_limits_applicable
from project.errors import RateLimited
from project.redis import redis_client
from teams.models import Team

logger = logging.getLogger("parley.budgets")
WINDOW_SECONDS = 60

# KEYS: per subject, its requests hash then its tokens hash.
# ARGV: tokens, then per subject its requests limit and tokens limit (0 = none).
# Returns {admitted, now, per subject: used_requests, used_tokens, reset_requests,
# reset_tokens, wait} where resets and wait are seconds.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[2])
local tokens = tonumber(ARGV[1])
local n = #KEYS / 2

local function scan(key, need, limit)
  local data = redis.call('HGETALL', key)
  local used, newest, buckets = 0, 0, {}
  for i = 1, #data, 2 do
    local sec, v = tonumber(data[i]), tonumber(data[i + 1])
    if sec <= now - window then
      redis.call('HDEL', key, data[i])
    else
      used = used + v
      buckets[#buckets + 1] = {sec, v}
      if sec > newest then newest = sec end
    end
  end
  local reset = 0
  if newest > 0 then reset = newest + window - now end
  local wait = 0
  if limit > 0 and used + need > limit then
    wait = -1
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local freed = 0
    for _, b in ipairs(buckets) do
      freed = freed + b[2]
      if used - freed + need <= limit then
        wait = b[1] + window - now
        break
      end
    end
  end
  return used, reset, wait
end

local out = {1, now}
local admitted = 1
for i = 1, n do
  local rl, tl = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local ur, rr, wr = scan(KEYS[2 * i - 1], 1, rl)
  local ut, rt, wt = scan(KEYS[2 * i], tokens, tl)
  local wait = 0
  if wr ~= 0 or wt ~= 0 then
    admitted = 0
    if wr == -1 or wt == -1 then wait = -1 else wait = math.max(wr, wt) end
  end
  for _, v in ipairs({ur, ut, rr, rt, wait}) do out[#out + 1] = v end
end
out[1] = admitted
if admitted == 1 then
  for i = 1, n do
    redis.call('HINCRBY', KEYS[2 * i - 1], now, 1)
    redis.call('HINCRBY', KEYS[2 * i], now, tokens)
    redis.call('EXPIRE', KEYS[2 * i - 1], window + 1)
    redis.call('EXPIRE', KEYS[2 * i], window + 1)
  end
end
return out
"""

# Gives back what an admitted request took (when a later check refused it).
_REFUND = """
for i = 1, #KEYS / 2 do
  if redis.call('HEXISTS', KEYS[2 * i - 1], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[2 * i - 1], ARGV[1], -1)
    redis.call('HINCRBY', KEYS[2 * i], ARGV[1], -tonumber(ARGV[2]))
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class SubjectLimits:
    key: str  # "user:<id>", "key:<id>" or "team:<id>"
    requests_per_minute: int  # 0: no limit
    tokens_per_minute: int


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """What the caller has left after this request, in the tightest applicable limit."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float = 0
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float = 0
    # For a refund if a later admission step refuses: the second the counts were written in.
    subjects: tuple[SubjectLimits, ...] = field(default=(), repr=False)
    second: int = 0
    tokens: int = 0

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the limits that apply (none: no headers)."""
        headers = {}
        if self.limit_requests is not None:
            headers["x-ratelimit-limit-requests"] = str(self.limit_requests)
            headers["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
            headers["x-ratelimit-reset-requests"] = duration(self.reset_requests)
        if self.limit_tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
            headers["x-ratelimit-reset-tokens"] = duration(self.reset_tokens)
        return headers


def duration(seconds: float) -> str:
    """OpenAI's duration format: ``0s``, ``17s``, ``1m0s``."""
    seconds = max(round(seconds), 0)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def limits_for(
    *, user: User, api_key: ApiKey | None, team: Team | None = None
) -> tuple[SubjectLimits, ...]:
    """The user's, the key's and the team's limits: a RateLimit row set by staff, else the
    settings (a team has no default: only a row limits it)."""
    rows = {
        ("team" if row.team_id else "key" if row.api_key_id else "user"): row
        for row in rate_limits_applicable(
            user_id=user.pk,
            api_key_id=api_key.pk if api_key else None,
            team_id=team.pk if team else None,
        )
    }
    subjects = []
    for kind, ident, rpm, tpm in [
        ("user", user.pk, settings.RATE_LIMIT_USER_RPM, settings.RATE_LIMIT_USER_TPM),
        *(
            [("key", api_key.pk, settings.RATE_LIMIT_API_KEY_RPM, settings.RATE_LIMIT_API_KEY_TPM)]
            if api_key
            else []
        ),
        *([("team", team.pk, 0, 0)] if team else []),
    ]:
        row = rows.get(kind)
        if row is not None:
            rpm = row.requests_per_minute or 0
            tpm = row.tokens_per_minute or 0
        if rpm or tpm:
            subjects.append(SubjectLimits(f"{kind}:{ident}", rpm, tpm))
    return tuple(subjects)


def _keys(subjects: tuple[SubjectLimits, ...]) -> list[str]:
    return [f"parley:rl:{s.key}:{dim}" for s in subjects for dim in ("r", "t")]


def ratelimit_acquire(
    *, user: User, api_key: ApiKey | None, tokens: int, team: Team | None = None
) -> RateLimitStatus:
    """Count one request of ``tokens`` against the user's, the key's and the team's per-minute
    limits, or
    raise ``RateLimited`` (nothing counted) with how long to wait. One Redis round trip; none
    at all when no limit applies."""
    subjects = limits_for(user=user, api_key=api_key, team=team)
    if not subjects:
        return RateLimitStatus()
    args = [tokens, WINDOW_SECONDS]
    for s in subjects:
        args += [s.requests_per_minute, s.tokens_per_minute]
    acquire = redis_client().register_script(_ACQUIRE)  # EVALSHA, loading it once if needed
    try:
        reply = acquire(keys=_keys(subjects), args=args)
    except redis.RedisError:
        # Fail open: budgets (in the database) still cap spend; an unreachable Redis must not
        # stop every request. Logged, so operators see limits were not applied.
        logger.warning("Rate limits not applied: Redis unavailable", exc_info=True)
        return RateLimitStatus()
    admitted, second = int(reply[0]), int(reply[1])
    status = _tightest(subjects, reply[2:], tokens=tokens, admitted=bool(admitted))
    status = RateLimitStatus(
        **{name: getattr(status, name) for name in _HEADER_FIELDS},
        subjects=subjects,
        second=second,
        tokens=tokens,
    )
    if admitted:
        return status
    waits = [int(reply[2 + 5 * i + 4]) for i in range(len(subjects))]
    if any(w == -1 for w in waits):
        raise RateLimited(
            f"This request's {tokens} tokens exceed your whole tokens-per-minute limit, so it "
            "can never be admitted, however long you wait; lower max_tokens or shorten the "
            "conversation.",
            code="request_too_large",
            limits=status.headers(),
        )
    wait = max(max(waits), 1)
    return _refuse(status, wait)


_HEADER_FIELDS = (
    "limit_requests",
    "remaining_requests",
    "reset_requests",
    "limit_tokens",
    "remaining_tokens",
    "reset_tokens",
)


def _refuse(status: RateLimitStatus, wait: int) -> RateLimitStatus:
    raise RateLimited(
        f"Rate limit reached; try again in {wait} s.",
        code="rate_limit_exceeded",
        retry_after=wait,
        limits=status.headers(),
        details={"retry_after_seconds": wait},
    )


def _tightest(subjects, values, *, tokens: int, admitted: bool) -> RateLimitStatus:
    """The lowest remaining requests and tokens over all subjects, after this request."""
    best: dict = {}
    for i, s in enumerate(subjects):
        used_r, used_t, reset_r, reset_t, _wait = (int(v) for v in values[5 * i : 5 * i + 5])
        if admitted:  # the script counted this request after measuring
            used_r, used_t = used_r + 1, used_t + tokens
            reset_r = reset_t = WINDOW_SECONDS
        if s.requests_per_minute:
            remaining = max(s.requests_per_minute - used_r, 0)
            if "remaining_requests" not in best or remaining < best["remaining_requests"]:
                best.update(
                    limit_requests=s.requests_per_minute,
                    remaining_requests=remaining,
                    reset_requests=reset_r,
                )
        if s.tokens_per_minute:
            remaining = max(s.tokens_per_minute - used_t, 0)
            if "remaining_tokens" not in best or remaining < best["remaining_tokens"]:
                best.update(
                    limit_tokens=s.tokens_per_minute,
                    remaining_tokens=remaining,
                    reset_tokens=reset_t,
                )
    return RateLimitStatus(**best)


def ratelimit_refund(*, status: RateLimitStatus) -> None:
    """Give back what ``ratelimit_acquire`` counted, when a later step refused the request."""
    if not status.subjects:
        return
    refund = redis_client().register_script(_REFUND)
    try:
        refund(keys=_keys(status.subjects), args=[status.second, status.tokens])
    except redis.RedisError:
        logger.warning("Rate-limit refund lost: Redis unavailable", exc_info=True)
