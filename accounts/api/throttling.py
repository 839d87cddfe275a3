"""What the auth endpoints limit: guessing, not use.

- Failed logins, per account and per client IP (``login_failures_account``,
  ``login_failures_ip``): past either limit every login for that account or from that address
  is refused until the window ends, the right password included, so a guesser learns nothing.
  A successful login does not count.
- Registrations per client IP (``register``).
- Refresh, verify and logout of a valid token, per user (``token``), generously; anything that
  is not a valid token counts as an anonymous request from its IP (DRF's default ``user``)."""

from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings

from accounts.api.tokens import UntypedToken
from project.api.throttling import (
    UserRateThrottle,
    WindowHit,
    WindowRateThrottle,
    client_ip,
    rate_for,
    window_hit,
)

MAX_TOKEN_LENGTH = 4096


class LoginAttempt:
    """One password check, counted before it runs so racing guesses cannot slip past the limit
    together; ``refund()`` takes the count back (a success, or no password checked)."""

    def __init__(self, request: Request) -> None:
        data = request.data if isinstance(request.data, dict) else {}
        email = data.get("email")
        subjects = [("login_failures_ip", client_ip(request))]
        if isinstance(email, str) and email.strip():
            subjects.append(("login_failures_account", email.strip().lower()))
        self.hits: list[WindowHit] = []
        for scope, ident in subjects:
            rate = rate_for(scope)
            if rate is not None:
                self.hits.append(window_hit(scope=scope, ident=ident, rate=rate))
        refused = [hit for hit in self.hits if hit.exceeded]
        if refused:
            self.refund()  # a refused attempt checks no password, so it is not a failure
            raise Throttled(
                wait=max(hit.retry_after for hit in refused),
                detail="Too many failed logins for this account or from this address; "
                "try again later.",
            )

    def refund(self) -> None:
        for hit in self.hits:
            hit.refund()
        self.hits = []


class RegisterRateThrottle(WindowRateThrottle):
    scope = "register"


def token_user_id(raw) -> str | None:
    """The user id of a valid, unexpired token (access or refresh), else None."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_LENGTH:
        return None
    try:
        return str(UntypedToken(raw)[api_settings.USER_ID_CLAIM])
    except TokenError:
        return None


class TokenHolderRateThrottle(WindowRateThrottle):
    """For views that take a token in the body (``view.jwt_field``): counted per user when
    the token is valid, else per IP like any anonymous request."""

    scope = "token"

    def allow_request(self, request: Request, view) -> bool:
        data = request.data if isinstance(request.data, dict) else {}
        self._user_id = token_user_id(data.get(view.jwt_field))
        if self._user_id is None:
            anonymous = UserRateThrottle()
            allowed = anonymous.allow_request(request, view)
            self._wait = None if allowed else anonymous.wait()
            return allowed
        return super().allow_request(request, view)

    def identity(self, request: Request, view) -> str | None:
        return self._user_id
