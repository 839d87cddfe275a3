"""Domain errors: what went wrong, in the domain's words, with no knowledge of HTTP.

Services, selectors, job handlers and the admin raise and catch these. The API layer maps each
class to a status through one table (``project.api.errors.STATUS_BY_ERROR``); the admin shows
the message to staff. ``code`` is a stable machine-readable word clients may branch on;
``details`` carries field errors (``{"field": ["message"]}``) or facts the client needs
(e.g. a budget's remaining amount); ``retry_after`` is seconds, when waiting helps."""

from typing import Any


class DomainError(Exception):
    """Base of every domain error. The message is shown to the caller: never put secrets in it."""

    default_code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.retry_after = retry_after


class InvalidInput(DomainError):
    """The request cannot be carried out as asked (a bad value, an unknown model)."""


class NotAllowed(DomainError):
    """The caller may not do this (a disabled feature, a model they have no access to)."""

    default_code = "not_allowed"


class SignInRefused(NotAllowed):
    """The identity provider's answer does not let this person in (an invalid ID token, an
    email domain or groups that are not allowed). The message says which, for the person."""

    default_code = "sign_in_refused"


class NotFound(DomainError):
    """The object does not exist, or belongs to someone else (the two look the same)."""

    default_code = "not_found"


class Conflict(DomainError):
    """The object's current state does not allow this now (a reply in flight, archived)."""

    default_code = "conflict"


class InvalidTransition(Conflict):
    """A status change the state machine does not allow, or a race lost to another writer."""

    default_code = "invalid_transition"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key sent again with a different request."""

    default_code = "idempotency_key_reused"


class LimitExceeded(DomainError):
    """A rate limit or a budget refuses the request for now."""

    default_code = "rate_limited"


class RateLimited(LimitExceeded):
    """A per-minute request or token limit refuses the request until ``retry_after``.
    ``limits`` holds the caller's standing as OpenAI's ``x-ratelimit-*`` name/value pairs, the
    vocabulary clients already read."""

    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limits: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.limits = limits or {}


class BudgetExceeded(LimitExceeded):
    """A spend budget cannot cover the request's worst-case cost."""

    default_code = "budget_exceeded"


class Unavailable(DomainError):
    """A service the request needs cannot be reached right now."""

    default_code = "unavailable"
