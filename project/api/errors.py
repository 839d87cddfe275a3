"""The one error shape every API error uses, from 400 to 503.

    {"error": {"status": 404, "code": "not_found", "message": "...", "details": null,
               "request_id": "..."}}

``details`` carries field errors for validation failures (``{"field": ["message"]}``).
"""

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import redis
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from project import errors as domain
from project.api.exceptions import ApiError
from project.logging import current_request_id

logger = logging.getLogger("parley.errors")


def error_body(status_code: int, code: str, message: str, details: Any = None) -> dict:
    return {
        "error": {
            "status": status_code,
            "code": code,
            "message": message,
            "details": details,
            "request_id": current_request_id(),
        }
    }


def error_response(
    status_code: int, code: str, message: str, details: Any = None, headers: dict | None = None
) -> JsonResponse:
    """A plain Django response in the error shape, for code outside DRF views."""
    response = JsonResponse(error_body(status_code, code, message, details), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _message_and_details(exc: exceptions.APIException) -> tuple[str, Any]:
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(detail, dict):
            return "Invalid input.", detail
        if isinstance(detail, list):
            return " ".join(str(item) for item in detail) or "Invalid input.", None
    if isinstance(detail, dict) and "detail" in detail:  # simplejwt's token errors
        return str(detail["detail"]), None
    if isinstance(detail, (list, dict)):
        return "Request failed.", detail
    return str(detail), None


# The one table from domain errors to HTTP statuses; the most specific class wins (MRO order).
STATUS_BY_ERROR: dict[type[domain.DomainError], int] = {
    domain.DomainError: 400,
    domain.InvalidInput: 400,
    domain.NotAllowed: 403,
    domain.SignInRefused: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.InvalidTransition: 409,
    domain.IdempotencyKeyReused: 422,
    domain.LimitExceeded: 429,
    domain.RateLimited: 429,
    domain.BudgetExceeded: 429,
    domain.Unavailable: 503,
}


def status_for(error: domain.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def _from_domain(error: domain.DomainError) -> ApiError:
    api_error = ApiError(
        error.message, code=error.code, status_code=status_for(error), details=error.details
    )
    if error.retry_after is not None:
        api_error.wait = error.retry_after
    if isinstance(error, domain.RateLimited):
        api_error.extra_headers = dict(error.limits)
    return api_error


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, domain.DomainError):
        return _from_domain(exc)
    if isinstance(exc, redis.RedisError):
        # A service the request needs is down: the client may retry, it is not Parley's bug.
        logger.warning("Redis unavailable during a request", exc_info=exc)
        return _from_domain(redis_unavailable())
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, exceptions.APIException):
        return exc
    return None


def redis_unavailable() -> domain.Unavailable:
    return domain.Unavailable(
        "A service Parley needs (Redis) is unreachable; try again shortly.",
        code="service_unavailable",
        retry_after=5,
    )


def _error_parts(exc: exceptions.APIException) -> tuple[dict, dict]:
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    elif exc.status_code == 429:
        # Waiting cannot cure it (a request over a whole per-minute limit, a spent budget):
        # the OpenAI-style SDKs read this header instead of retrying in vain.
        headers["x-should-retry"] = "false"
    headers.update(getattr(exc, "extra_headers", None) or {})
    message, details = _message_and_details(exc)
    code = getattr(exc, "error_code", None) or _default_code(exc)
    if isinstance(exc, ApiError):
        details = exc.details
    return error_body(exc.status_code, code, message, details), headers


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: every error leaves in the one shape.

    Unknown exceptions are logged with their traceback and answer a 500 that leaks nothing.
    """
    api_exc = _as_api_exception(exc)
    set_rollback()
    if api_exc is None:
        logger.exception("Unhandled error in API view", exc_info=exc)
        return Response(
            error_body(500, "server_error", "Internal server error."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    body, headers = _error_parts(api_exc)
    return Response(body, api_exc.status_code, headers=headers)


def exception_response(exc: Exception) -> JsonResponse | None:
    """The error-shaped response for ``exc`` in plain (non-DRF) views; None if unknown."""
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        return None
    body, headers = _error_parts(api_exc)
    if isinstance(api_exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    response = JsonResponse(body, status=api_exc.status_code)
    for name, value in headers.items():
        response[name] = value
    return response


def _default_code(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


# --- Error shapes by URL prefix --------------------------------------------------------------
# /api/ answers in the shape above; an app serving another API under its own prefix (/v1/:
# OpenAI's and Anthropic's shapes) registers how its errors look, and the edge (the size limit,
# unknown URLs, Django's own error pages, crashes) renders every error there in that shape.
ErrorShape = Callable[[str, Mapping[str, str], int, str, str], dict]
_error_shapes: dict[str, ErrorShape] = {}


def register_error_shape(prefix: str, render: ErrorShape) -> None:
    """``render(path, headers, status, code, message)`` returns the error body for paths
    under ``prefix``; ``headers`` are the request's, lower-cased names."""
    _error_shapes[prefix] = render


def shaped_error_body(
    path: str, headers: Mapping[str, str], status_code: int, code: str, message: str
) -> dict | None:
    """The error body a client of ``path`` expects, or None outside every API prefix."""
    for prefix, render in _error_shapes.items():
        if path.startswith(prefix):
            return render(path, headers, status_code, code, message)
    if path.startswith("/api/"):
        return error_body(status_code, code, message)
    return None


def request_headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def shaped_error_response(
    request: HttpRequest, status_code: int, code: str, message: str, headers: dict | None = None
) -> JsonResponse | None:
    body = shaped_error_body(request.path, request_headers(request), status_code, code, message)
    if body is None:
        return None
    response = JsonResponse(body, status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# Django-level handlers for requests that never reach a view (unknown URLs, crashes).
def handler404(request: HttpRequest, exception: Exception | None = None):
    response = shaped_error_response(request, 404, "not_found", "Not found.")
    if response is not None:
        return response
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request: HttpRequest):
    response = shaped_error_response(request, 500, "server_error", "Internal server error.")
    if response is not None:
        return response
    from django.views.defaults import server_error

    return server_error(request)
