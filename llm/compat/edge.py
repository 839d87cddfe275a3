"""The edge of ``/v1/``, once for every emulated API: which error shape a request gets, methods
(405 with ``Allow``, ``OPTIONS``), unknown paths (404), streams that end when the caller's
access is revoked, and the error shape registered with the project so that errors made before
or outside these views (the size limit, Django's own pages, a crash, Redis down) leave in the
same shape. CORS preflights are answered by django-cors-headers before any of this
(``CORS_URLS_REGEX`` covers ``/v1/``)."""

import functools
import json
from collections.abc import Callable, Mapping

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.revocation import until_access_revoked
from llm.compat import anthropic_messages, openai_chat
from llm.compat.core import GatewayError, kind_of_status

PREFIX = "/v1/"


def speaks_anthropic(path: str, headers: Mapping[str, str]) -> bool:
    """Anthropic's SDK sends ``anthropic-version`` on every request; ``/v1/messages`` is
    Anthropic's whoever calls it. Everything else is OpenAI's."""
    return path.startswith("/v1/messages") or "anthropic-version" in headers


def error_body_for(
    path: str, headers: Mapping[str, str], status: int, code: str, message: str
) -> dict:
    """The project's error-shape hook for ``/v1/`` (see ``project.api.errors``)."""
    error = GatewayError(status, kind_of_status(status), message, code=code)
    api = anthropic_messages if speaks_anthropic(path, headers) else openai_chat
    return api.error_body(error)


def _api_of(request: HttpRequest):
    """The module of the API ``request`` speaks (``request.headers`` ignores letter case)."""
    return anthropic_messages if speaks_anthropic(request.path, request.headers) else openai_chat


def error_response(request: HttpRequest, error: GatewayError) -> HttpResponse:
    """``error`` in the shape of the API the request speaks."""
    return _api_of(request).error_response(error)


ACCESS_REVOKED = "Access was revoked (API key revoked or account deactivated)."


def revoked_event(request: HttpRequest) -> str:
    """The in-stream error event that ends a stream whose caller lost access, as each SDK
    raises it: Anthropic's ``error`` event; for OpenAI's, an ``error`` event whose data holds
    ``error`` (Chat Completions' in-stream error) and the Responses API's own fields."""
    error = GatewayError(401, "authentication", ACCESS_REVOKED, code="access_revoked")
    if _api_of(request) is anthropic_messages:
        return f"event: error\ndata: {json.dumps(anthropic_messages.error_body(error))}\n\n"
    body = openai_chat.error_body(error)["error"]
    data = {"type": "error", "code": error.code, "message": error.message, "param": None}
    return f"event: error\ndata: {json.dumps({**data, 'error': body})}\n\n"


def _revocable(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A stream ends within a second or two of its caller's key or account being revoked."""
    api_key = getattr(request, "auth", None)
    user = getattr(request, "user", None)
    if not isinstance(response, StreamingHttpResponse) or not response.is_async:
        return response
    if user is None or not user.is_authenticated:
        return response
    response.streaming_content = until_access_revoked(
        response.streaming_content,
        user_id=user.pk,
        api_key_id=getattr(api_key, "pk", None),
        on_revoked=lambda: revoked_event(request),
    )
    return response


def endpoint(view: Callable, *methods: str) -> Callable:
    """``view`` answering only ``methods``: any other is a 405 in the API's shape with
    ``Allow``, and a plain ``OPTIONS`` is answered with ``Allow``. A stream it answers ends
    when the caller's access is revoked. CSRF does not apply (no cookies authenticate these
    APIs)."""
    allow = ", ".join((*methods, "OPTIONS"))

    def refusal(request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS":
            return HttpResponse(status=204, headers={"Allow": allow})
        wanted = " or ".join(methods)
        return error_response(
            request,
            GatewayError(
                405,
                "invalid_request",
                f"{request.method} is not allowed on {request.path}; use {wanted}.",
                code="method_not_allowed",
                headers={"Allow": allow},
            ),
        )

    if iscoroutinefunction(view):

        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return refusal(request)
            return _revocable(request, await view(request, *args, **kwargs))

        markcoroutinefunction(wrapper)
    else:

        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return refusal(request)
            return view(request, *args, **kwargs)

    return csrf_exempt(functools.wraps(view)(wrapper))


@csrf_exempt
def unknown_path(request: HttpRequest, path: str = "") -> HttpResponse:
    """A 404 in the API's shape for any path under ``/v1/`` that is not an endpoint (as
    OpenAI words it), instead of Django's HTML page."""
    return error_response(
        request,
        GatewayError(
            404,
            "not_found",
            f"Invalid URL ({request.method} {request.path}).",
            code="unknown_url",
        ),
    )
