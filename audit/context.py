"""Who is acting, from where: bound per request by ``AuditContextMiddleware`` and read when an
event is recorded, so services need no ``actor`` argument and the admin, the API and the
commands record the same way."""

import contextvars
import sys
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "audit_request", default=None
)


def bind_request(request: HttpRequest) -> contextvars.Token:
    return _request.set(request)


def unbind_request(token: contextvars.Token) -> None:
    _request.reset(token)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as the throttles see it: REMOTE_ADDR, or the NUM_PROXIES-th
    X-Forwarded-For entry from the right. Unlike django-auditlog's own middleware, a client
    cannot choose it by sending X-Forwarded-For."""
    from django.conf import settings

    num_proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if num_proxies > 0 and forwarded:
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        if addresses:
            return addresses[-min(num_proxies, len(addresses))]
    return request.META.get("REMOTE_ADDR") or None


@dataclass(frozen=True, slots=True)
class Origin:
    actor: Any  # a User or None
    ip: str | None
    source: str
    command: str


def current_origin() -> Origin:
    request = _request.get()
    if request is not None:
        # DRF authenticates in the view and sets the HttpRequest's user then, so this is
        # read when the event is recorded, not when the request came in.
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
        return Origin(actor=actor, ip=client_ip(request), source="request", command="")
    argv = sys.argv
    if len(argv) > 1 and argv[0].endswith("manage.py"):
        return Origin(actor=None, ip=None, source="command", command=argv[1][:64])
    return Origin(actor=None, ip=None, source="system", command="")
