"""``GET .../messages/{id}/stream/``: a reply as Server-Sent Events.

An async view, so under the ASGI server an open stream is a parked coroutine waiting on Redis,
not a blocked thread: hundreds of readers cost little and never starve other requests.

Events: ``delta`` ``{"text"}`` for each piece of text; ``reset`` ``{"attempt"}`` when a retry
starts the reply over (drop the text so far); then one final ``done`` ``{"message"}`` or
``error`` ``{"code", "message"}``. Every event from the live stream has an ``id``; reconnect
with ``Last-Event-ID`` to resume after it with nothing missed or repeated. Comments
(``: keep-alive``) are sent while nothing happens."""

import json
import logging
import re
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.request import Request

from accounts.api.authentication import ApiKeyAuthentication, JWTAuthentication
from accounts.models import User
from llm import metrics, selectors, streams
from llm.api.serializers import MessageSerializer
from llm.models import Message, MessageStatus
from project.api.errors import error_response, exception_response

logger = logging.getLogger("parley.llm")
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
KEEP_ALIVE_MS = 15000


def _authenticate(request: HttpRequest) -> User:
    drf_request = Request(request)
    for authenticator in (ApiKeyAuthentication(), JWTAuthentication()):
        result = authenticator.authenticate(drf_request)
        if result is not None:
            return result[0]
    raise exceptions.NotAuthenticated()


def _load(request: HttpRequest, conversation_pk, message_pk) -> tuple[Message, bool]:
    try:
        user = _authenticate(request)
        message = selectors.message_get(
            owner=user, conversation_id=conversation_pk, message_id=message_pk
        )
        return message, streams.reply_stream_exists(str(message.pk))
    finally:
        # The stream may stay open for minutes: give the database connection back now, not
        # when the response ends, or open streams would exhaust the pool. (Inside a test's
        # transaction there is nothing to give back.)
        if not connection.in_atomic_block:
            connection.close()


def _event(event: str, data: dict, entry_id: str | None = None) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _events(message: Message, live: bool, after: str) -> AsyncIterator[str]:
    finished = message.status not in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS)
    if finished and not live:
        # The live stream has expired: the stored message is the whole story.
        if message.content:
            yield _event("delta", {"text": message.content})
        if message.status == MessageStatus.COMPLETED:
            yield _event("done", {"message": MessageSerializer(message).data})
        else:
            yield _event("error", {"code": message.status, "message": message.error})
        return
    yield ": stream open\n\n"  # flush headers to the client at once
    metrics.OPEN_STREAMS.inc()
    try:
        async for item in streams.reply_follow(
            str(message.pk), after=after, block_ms=KEEP_ALIVE_MS
        ):
            if item is None:
                yield ": keep-alive\n\n"
                continue
            entry_id, event, data = item
            yield _event(event, data, entry_id)
    finally:
        metrics.OPEN_STREAMS.dec()


async def message_stream(request: HttpRequest, conversation_pk, message_pk) -> HttpResponse:
    if request.method != "GET":
        return error_response(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    try:
        message, live = await sync_to_async(_load)(request, conversation_pk, message_pk)
    except Exception as exc:
        response = exception_response(exc)
        if response is None:
            raise
        return response
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0"
    after = last_event_id if _ENTRY_ID.match(last_event_id) else "0"
    response = StreamingHttpResponse(
        _events(message, live, after), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer
    return response
