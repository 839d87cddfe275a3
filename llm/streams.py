"""Live reply streams over Redis Streams, one per assistant message.

The worker appends events (``delta``, ``tool_call`` and ``tool_arguments`` for a reply that
calls tools, ``reset`` when a retry starts over, ``done``, ``error``)
with XADD; readers follow with XREAD from any entry id, so a client that reconnects with
``Last-Event-ID`` resumes exactly after the last event it saw. A stream expires a while after
its reply finishes; the stored message is the record after that."""

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis
from django.conf import settings

from project.errors import InvalidInput, LimitExceeded, Unavailable
from project.money import usd
from project.redis import async_redis_client, redis_client

STREAM_TTL_SECONDS = 3600
FINAL_EVENTS = {"done", "error"}
logger = logging.getLogger("parley.llm")
_ENTRY_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX_ID_PART = 2**64 - 1
SLOT_RETRY_AFTER_SECONDS = 5


def _stream_key(message_id: str) -> str:
    return f"parley:reply:{message_id}"


def reply_publish(message_id: str, event: str, data: dict[str, Any]) -> str:
    """Append one event to the reply's stream; final events start its expiry clock."""
    key = _stream_key(message_id)
    pipeline = redis_client().pipeline(transaction=False)  # one round trip per event
    pipeline.xadd(key, {"event": event, "data": json.dumps(data)})
    pipeline.expire(key, STREAM_TTL_SECONDS)
    entry_id, _ = pipeline.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


class ReplyDeltas:
    """A reply's deltas, coalesced: at most one XADD per ``window`` seconds or per
    ``max_pieces`` deltas, whichever comes first (a delta after a quiet spell goes out at
    once). Readers get the same text in fewer, larger deltas; the worker makes a Redis round
    trip per ~50 ms instead of per token. Call ``flush()`` before the final event.

    Tool calls go the same way: ``tool_call`` (its index, id and name) at once, then its
    arguments' JSON text as ``tool_arguments`` fragments, coalesced like text.

    A failed XADD (Redis restarting) is logged and skipped: live readers miss those words, the
    stored reply is still whole, and the final event carries it."""

    def __init__(self, message_id: str, *, window: float = 0.05, max_pieces: int = 32) -> None:
        self._message_id = message_id
        self._window = window
        self._max_pieces = max_pieces
        self._pieces: list[str] = []
        self._event = "delta"  # what the pending pieces are: text, or a tool call's arguments
        self._call_index = 0
        self._next_flush = 0.0

    def add(self, text: str) -> None:
        self._add("delta", text)

    def tool_call(self, *, index: int, id: str, name: str) -> None:
        self.flush()
        self._call_index = index
        self._publish("tool_call", {"index": index, "id": id, "name": name})

    def tool_arguments(self, *, index: int, fragment: str) -> None:
        if index != self._call_index:
            self.flush()
            self._call_index = index
        self._add("tool_arguments", fragment)

    def _add(self, event: str, piece: str) -> None:
        if event != self._event:
            self.flush()
            self._event = event
        self._pieces.append(piece)
        if len(self._pieces) >= self._max_pieces or time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        if not self._pieces:
            return
        text = "".join(self._pieces)
        self._pieces.clear()
        self._next_flush = time.monotonic() + self._window
        if self._event == "delta":
            self._publish("delta", {"text": text})
        else:
            self._publish("tool_arguments", {"index": self._call_index, "arguments": text})

    def _publish(self, event: str, data: dict[str, Any]) -> None:
        try:
            reply_publish(self._message_id, event, data)
        except redis.RedisError as exc:
            logger.warning(
                "Live %s not published: %s",
                event,
                type(exc).__name__,
                extra={"message_id": self._message_id},
            )


def entry_id_parse(value: str) -> str:
    """A client's resume point (``Last-Event-ID``) as a Redis stream id, or ``InvalidInput``.
    Redis accepts ``<ms>-<seq>`` (or ``<ms>``) with each part at most 2^64-1; anything else
    would make XREAD fail after the response had started."""
    match = _ENTRY_ID.match(value)
    if match is None or any(int(part) > _MAX_ID_PART for part in match.groups() if part):
        raise InvalidInput(
            "Last-Event-ID must be an event id this stream sent (<milliseconds>-<sequence>).",
            code="invalid_last_event_id",
        )
    return value


def reply_stream_exists(message_id: str) -> bool:
    return bool(redis_client().exists(_stream_key(message_id)))


MAX_BLOCK_MS = 15000


def _async_client():
    # The event loop's one shared client: each command borrows a connection from its bounded
    # pool and gives it back. Reads must outlast the longest server-side BLOCK, or quiet
    # streams would time out.
    return async_redis_client(socket_timeout=MAX_BLOCK_MS / 1000 + 10)


async def reply_follow(
    message_id: str, *, after: str = "0", block_ms: int = MAX_BLOCK_MS
) -> AsyncIterator[tuple[str, str, dict[str, Any]] | None]:
    """Yield ``(entry_id, event, data)`` from after ``after`` until a final event; yields None
    whenever ``block_ms`` (at most ``MAX_BLOCK_MS``) passes with nothing new, so the caller
    can send a keep-alive."""
    client = _async_client()
    block_ms = min(block_ms, MAX_BLOCK_MS)
    key = _stream_key(message_id)
    while True:
        batches = await client.xread({key: after}, block=block_ms, count=256)
        if not batches:
            yield None
            continue
        for raw_id, fields in batches[0][1]:
            after = raw_id.decode()
            event = fields[b"event"].decode()
            yield after, event, json.loads(fields[b"data"])
            if event in FINAL_EVENTS:
                return


# Open streams per user: a sorted set of stream tokens scored by when each expires. A stream
# refreshes its score while it is open and removes it when it closes; a process that dies
# without closing leaves tokens that expire by themselves. Redis's clock decides, so the
# processes' clocks need not agree. KEYS[1] set; ARGV: token, limit (0: refresh only), ttl.
_SLOT_SCRIPT = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
if limit == 0 then
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
elseif redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return 1
"""


def _slots_key(user_id) -> str:
    return f"parley:streams:user:{user_id}"


async def stream_slot_acquire(*, user_id) -> str:
    """Take one of the user's ``STREAMS_MAX_PER_USER`` open-stream slots, counted across every
    process; returns its token. Full: ``LimitExceeded``; Redis unreachable: ``Unavailable``."""
    token = uuid.uuid4().hex
    try:
        taken = await _async_client().eval(
            _SLOT_SCRIPT,
            1,
            _slots_key(user_id),
            token,
            settings.STREAMS_MAX_PER_USER,
            settings.STREAMS_SLOT_TTL,
        )
    except redis.RedisError as exc:
        raise Unavailable(
            "Live streams are unavailable right now; try again shortly.",
            code="stream_unavailable",
            retry_after=SLOT_RETRY_AFTER_SECONDS,
        ) from exc
    if not taken:
        raise LimitExceeded(
            f"At most {settings.STREAMS_MAX_PER_USER} reply streams may be open at once; "
            "close one first.",
            code="too_many_streams",
            retry_after=SLOT_RETRY_AFTER_SECONDS,
        )
    return token


async def stream_slot_refresh(*, user_id, token: str) -> None:
    """Push the slot's expiry ``STREAMS_SLOT_TTL`` seconds ahead (while the stream is open)."""
    await _async_client().eval(
        _SLOT_SCRIPT, 1, _slots_key(user_id), token, 0, settings.STREAMS_SLOT_TTL
    )


async def stream_slot_release(*, user_id, token: str) -> None:
    """Give the slot back; best effort (an unreleased slot expires by itself)."""
    try:
        await _async_client().zrem(_slots_key(user_id), token)
    except redis.RedisError:
        pass


def reply_text_so_far(message_id: str) -> str:
    """The text streamed since the last ``reset``: what a reader has seen of the reply."""
    parts: list[str] = []
    for _, fields in redis_client().xrange(_stream_key(message_id)):
        event = fields[b"event"].decode()
        if event == "reset":
            parts.clear()
        elif event == "delta":
            parts.append(json.loads(fields[b"data"])["text"])
    return "".join(parts)


def _iso(value) -> str | None:
    # The API's datetime format (DRF's): ISO 8601 with "Z" for UTC.
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def message_snapshot(message) -> dict[str, Any]:
    """A reply as the API shows it (the fields of ``GET .../messages/{id}/``), for the final
    ``done``/``error`` events: built here so the worker never imports the API layer."""
    # The worker is synchronous: reading the reply's siblings here is one cheap query.
    siblings = message.conversation.messages.filter(parent_id=message.parent_id)
    return {
        "id": str(message.pk),
        "parent": str(message.parent_id) if message.parent_id else None,
        "sibling_ids": [
            str(pk) for pk in siblings.order_by("position").values_list("pk", flat=True)
        ],
        "role": message.role,
        "content": message.content,
        "parts": message.parts,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cost": str(usd(message.cost_micros)) if message.cost_micros is not None else None,
        "latency_ms": message.latency_ms,
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "model": message.model.slug if message.model_id else None,
        "job": str(message.job_id) if message.job_id else None,
        "error": message.error,
        "created_at": _iso(message.created_at),
        "completed_at": _iso(message.completed_at),
    }
