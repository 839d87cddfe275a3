"""Request plumbing: request ids with one access-log line per request, the error shape of
every API error (``/api/``'s, or the emulated API's under ``/v1/``), and body size limits."""

import io
import json
import logging
import re
import time
import uuid
from http import HTTPStatus

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse

from project import hotcache
from project.api.errors import (
    error_body,
    error_response,
    redis_unavailable,
    shaped_error_body,
    shaped_error_response,
    status_for,
)
from project.logging import bind_request_id, unbind_request_id

access_log = logging.getLogger("parley.request")
logger = logging.getLogger("parley.errors")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _DualModeMiddleware:
    """Runs natively in both WSGI and ASGI, so async views pay for no thread hops."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        return self.handle(request, self.get_response)

    async def _acall(self, request: HttpRequest):
        early = self.before(request)
        if early is not None:
            return self.after(request, early)
        response = await self.get_response(request)
        return self.after(request, response)

    def handle(self, request: HttpRequest, get_response) -> HttpResponse:
        early = self.before(request)
        response = early if early is not None else get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class RequestIdMiddleware(_DualModeMiddleware):
    """Takes ``X-Request-ID`` (or makes one), binds it to every log record of the request,
    echoes it in the response, and writes one access-log line: method, path (never the query
    string, which may carry tokens), status, duration and user id."""

    def before(self, request: HttpRequest) -> None:
        incoming = request.headers.get("X-Request-ID", "")
        request.id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request._request_id_token = bind_request_id(request.id)
        request._started = time.perf_counter()
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response["X-Request-ID"] = request.id
        user = getattr(request, "user", None)
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - request._started) * 1000, 2),
                "user_id": user.pk if user is not None and user.is_authenticated else None,
            },
        )
        unbind_request_id(request._request_id_token)
        return response


# Codes for errors Django produces itself; the rest take the status phrase ("Bad Request").
_DJANGO_ERROR_CODES = {
    400: "bad_request",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "server_error",
}
# Headers of a replaced error page that describe the body being replaced.
_BODY_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition")


class ApiErrorShapeMiddleware(_DualModeMiddleware):
    """Every error under an API prefix leaves in that API's JSON shape, whatever the settings:
    Django's own error pages (with DEBUG on, a 404 that lists the URLconf, a 500 with a
    traceback; a 400 for a bad Host) are replaced, keeping every header a client acts on
    (``Allow``, ``Retry-After``, CORS). Errors already in JSON pass untouched. A view outside
    DRF that meets an unreachable Redis answers 503 (retry), not 500."""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code < 400
            or response.streaming
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        code = _DJANGO_ERROR_CODES.get(status, phrase.lower().replace(" ", "_").replace("-", "_"))
        message = "Internal server error." if status >= 500 else f"{phrase}."
        replacement = shaped_error_response(request, status, code, message)
        if replacement is None:
            return response
        for header, value in response.items():
            if header not in _BODY_HEADERS:
                replacement[header] = value
        return replacement

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, redis.RedisError):
            return None  # Django's handler: logged, then a 500 (in the shape, see after())
        logger.warning("Redis unavailable during a request", exc_info=exception)
        error = redis_unavailable()
        return shaped_error_response(
            request,
            status_for(error),
            error.code,
            error.message,
            headers={"Retry-After": str(int(error.retry_after))},
        )


class RequestSizeLimitMiddleware(_DualModeMiddleware):
    """Refuses API bodies over MAX_REQUEST_BODY_BYTES with a 413 before reading them.

    Under a WSGI server that de-chunks bodies (gunicorn's sync workers mark them
    ``wsgi.input_terminated``), a chunked body is read here up to the limit and handed on with
    its length: Django would otherwise see no Content-Length and an empty body. (Under ASGI,
    BodyLimitASGIMiddleware has done this before Django runs.)"""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        limit = settings.MAX_REQUEST_BODY_BYTES
        if _wsgi_chunked(request):
            body = request.META["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                # Past the limit the body is half read: refuse on every path.
                return _too_large(request, f"over {limit} bytes", limit) or error_response(
                    413, "request_too_large", _too_large_message(f"over {limit} bytes", limit)
                )
            request._stream = LimitedStream(io.BytesIO(body), len(body))
            request.META["CONTENT_LENGTH"] = str(len(body))
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return _too_large(request, f"{length} bytes", limit)  # None outside the APIs
        return None


def _too_large_message(size: str, limit: int) -> str:
    return f"Request body is {size}; the limit is {limit} bytes."


def _too_large(request: HttpRequest, size: str, limit: int) -> HttpResponse | None:
    return shaped_error_response(request, 413, "request_too_large", _too_large_message(size, limit))


def _wsgi_chunked(request: HttpRequest) -> bool:
    return (
        not request.META.get("CONTENT_LENGTH")
        and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        and bool(request.META.get("wsgi.input_terminated"))
    )


class BodyLimitASGIMiddleware:
    """Wraps the ASGI application: the body limit holds before Django reads anything.

    Django's ASGI handler reads a whole body into a temporary file before any middleware
    runs, and a chunked body (no Content-Length) then looks empty to DRF. Here a declared
    length over MAX_REQUEST_BODY_BYTES is refused at once; a chunked body is counted as it
    arrives, refused as soon as it passes the limit, and otherwise handed on whole with its
    Content-Length, so honest chunked clients are parsed like any other."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = settings.MAX_REQUEST_BODY_BYTES
        headers = dict(scope["headers"])  # the last of a repeated header is enough here
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.strip().isdigit() and int(declared) > limit:
                return await self._refuse(scope, send, f"{int(declared)} bytes", limit)
            return await self.app(scope, receive, send)
        if b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # no body at all

        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before finishing its body
            body += message.get("body", b"")
            if len(body) > limit:
                return await self._refuse(scope, send, f"over {limit} bytes", limit)
            if not message.get("more_body", False):
                break

        scope = dict(scope)
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"transfer-encoding", b"content-length")
        ] + [(b"content-length", str(len(body)).encode())]
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # then the connection's own events (a disconnect)

        await self.app(scope, replay, send)

    async def _refuse(self, scope, send, size: str, limit: int) -> None:
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = bind_request_id(request_id)
        try:
            path = scope.get("path", "")
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope["headers"]
            }
            message = _too_large_message(size, limit)
            shaped = shaped_error_body(path, headers, 413, "request_too_large", message)
            body = json.dumps(shaped or error_body(413, "request_too_large", message)).encode()
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": 413,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": None,
                },
            )
        finally:
            unbind_request_id(token)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    # The rest of the body is never read, so the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HotCacheSnapshotMiddleware(_DualModeMiddleware):
    """One read of the per-process caches' generations per request, at its first cached
    lookup (project.hotcache): a request that reads no cache costs nothing."""

    def handle(self, request: HttpRequest, get_response) -> HttpResponse:
        with hotcache.snapshot():
            return get_response(request)

    async def _acall(self, request: HttpRequest):
        with hotcache.snapshot():
            return await self.get_response(request)
