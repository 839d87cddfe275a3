"""HTTP plumbing the emulated APIs share: the body under its size limit, JSON and
Server-Sent Events responses."""

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from llm.compat.core import GatewayError


def request_body(request: HttpRequest) -> bytes:
    """The raw body, or a 413 past MAX_REQUEST_BODY_BYTES."""
    limit = settings.MAX_REQUEST_BODY_BYTES
    try:
        body = request.body
    except RequestDataTooBig:
        body = None
    if body is None or len(body) > limit:
        raise GatewayError(
            413, "too_large", f"The request body is over the limit of {limit} bytes."
        )
    return body


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def sse_response(events: AsyncIterator[str], headers: dict | None = None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        events, content_type="text/event-stream; charset=utf-8", headers=headers
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer
    return response


def error_headers(error: GatewayError) -> dict:
    """``Retry-After`` when waiting helps, the caller's ``x-ratelimit-*`` standing; and on a
    429 that waiting cannot cure (a request over a whole per-minute limit, a spent budget)
    ``x-should-retry: false``, which the OpenAI and Anthropic SDKs obey instead of retrying."""
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after + 0.499)))
    elif error.status == 429 and error.code != "provider_rate_limited":
        headers["x-should-retry"] = "false"
    return headers
