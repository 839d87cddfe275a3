"""``GET .../messages/{id}/stream/``: a reply as Server-Sent Events.

An async view, so under the ASGI server an open stream is a parked coroutine waiting on Redis,
not a blocked thread: hundreds of readers cost little and never starve other requests.

Events: ``delta`` ``{"text"}`` for each piece of text; ``reset`` ``{"attempt"}`` when a retry
starts the reply over (drop the text so far); then one final ``done`` ``{"message"}`` or
``error`` ``{"code", "message"}``. Every event from the live stream has an ``id``; reconnect
with ``Last-Event-ID`` to resume after it with nothing missed or repeated (an id that is not
one, or is outside Redis's range, is a 400). Comments (``: keep-alive``) are sent while nothing
happens. If Redis fails mid-stream the stream ends with ``error`` ``{"code":
"stream_unavailable"}``: reconnect with the last id. If the reader's API key is revoked or
their account deactivated, it ends within about 2 s with ``error`` ``{"code":
"access_revoked"}`` (``accounts.revocation``). A user may have ``STREAMS_MAX_PER_USER``
live streams open at once (counted across processes); one more is a 429 with Retry-After."""

import json
import logging
import time
from collections.abc import AsyncIterator

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework import exceptions

from accounts.api.authentication import credentials_authenticate
from accounts.models import User
from accounts.revocation import until_access_revoked
from llm import metrics, selectors, streams
from llm.api.serializers import MessageSerializer
from llm.models import Message, MessageStatus
from project.api.errors import error_response, exception_response
from project.db import connection_give_back

logger = logging.getLogger("parley.llm")
KEEP_ALIVE_MS = 15000
ACCESS_REVOKED = {
    "code": "access_revoked",
    "message": "Access was revoked (API key revoked or account deactivated).",
}
STREAM_UNAVAILABLE = {
    "code": "stream_unavailable",
    "message": "The live stream was interrupted; reconnect with Last-Event-ID to resume.",
}


def _authenticate(request: HttpRequest) -> User:
    found = credentials_authenticate(request)
    if found is None:
        raise exceptions.NotAuthenticated()
    return found[0]


def _load(request: HttpRequest, conversation_pk, message_pk) -> tuple[User, Message, bool]:
    try:
        user = _authenticate(request)
        message = selectors.message_get(
            owner=user, conversation_id=conversation_pk, message_id=message_pk
        )
        try:
            live = streams.reply_stream_exists(str(message.pk))
        except redis.RedisError:
            # A finished reply is then served from the database; an unfinished one tries the
            # live stream, which reports `stream_unavailable` if Redis is still out.
            live = False
        return user, message, live
    finally:
        # The stream may stay open for minutes: give the database connection back now, not
        # when the response ends, or open streams would exhaust the pool.
        connection_give_back()


def _event(event: str, data: dict, entry_id: str | None = None) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _is_replay(message: Message, live: bool) -> bool:
    # The live stream has expired: the stored message is the whole story.
    finished = message.status not in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS)
    return finished and not live


async def _events(
    message: Message, live: bool, after: str, user_id: int, slot: str | None
) -> AsyncIterator[str]:
    if _is_replay(message, live):
        if message.content:
            yield _event("delta", {"text": message.content})
        if message.status == MessageStatus.COMPLETED:
            yield _event("done", {"message": MessageSerializer(message).data})
        else:
            yield _event("error", {"code": message.status, "message": message.error})
        return
    # The slot must be renewed well within its TTL, quiet stream or busy.
    renew_every = settings.STREAMS_SLOT_TTL / 3
    block_ms = int(min(KEEP_ALIVE_MS, renew_every * 1000))
    renew_at = time.monotonic() + renew_every
    yield ": stream open\n\n"  # flush headers to the client at once
    metrics.OPEN_STREAMS.inc()
    try:
        async for item in streams.reply_follow(str(message.pk), after=after, block_ms=block_ms):
            if time.monotonic() >= renew_at:
                await streams.stream_slot_refresh(user_id=user_id, token=slot)
                renew_at = time.monotonic() + renew_every
            if item is None:
                yield ": keep-alive\n\n"
                continue
            entry_id, event, data = item
            yield _event(event, data, entry_id)
    except redis.RedisError as exc:
        # Headers are long sent: say what happened in the stream instead of cutting it off.
        logger.warning(
            "Reply stream interrupted by Redis",
            extra={"message_id": str(message.pk), "error": type(exc).__name__},
        )
        yield _event("error", STREAM_UNAVAILABLE)
    finally:
        metrics.OPEN_STREAMS.dec()
        await streams.stream_slot_release(user_id=user_id, token=slot)


async def message_stream(request: HttpRequest, conversation_pk, message_pk) -> HttpResponse:
    if request.method != "GET":
        return error_response(
            405,
            "method_not_allowed",
            f'Method "{request.method}" not allowed.',
            headers={"Allow": "GET"},  # RFC 9110: a 405 says which methods would do
        )
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    try:
        user, message, live = await sync_to_async(_load)(request, conversation_pk, message_pk)
        after = streams.entry_id_parse(last_event_id) if last_event_id else "0"
        slot = None
        if not _is_replay(message, live):
            slot = await streams.stream_slot_acquire(user_id=user.pk)
    except Exception as exc:
        response = exception_response(exc)
        if response is None:
            raise
        return response
    events = _events(message, live, after, user.pk, slot)
    if not _is_replay(message, live):
        api_key = getattr(request, "auth", None)
        events = until_access_revoked(
            events,
            user_id=user.pk,
            api_key_id=api_key.pk if api_key is not None else None,
            on_revoked=lambda: _event("error", ACCESS_REVOKED),
        )
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer
    return response
