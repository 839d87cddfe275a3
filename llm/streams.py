"""Live reply streams over Redis Streams, one per assistant message.

The worker appends events (``delta``, ``reset`` when a retry starts over, ``done``, ``error``)
with XADD; readers follow with XREAD from any entry id, so a client that reconnects with
``Last-Event-ID`` resumes exactly after the last event it saw. A stream expires a while after
its reply finishes; the stored message is the record after that."""

import json
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

STREAM_TTL_SECONDS = 3600
FINAL_EVENTS = {"done", "error"}

_clients: dict[str, redis.Redis] = {}


def _stream_key(message_id: str) -> str:
    return f"parley:reply:{message_id}"


def _client() -> redis.Redis:
    # One client (and pool) per URL per process: redis-py clients are thread-safe, and building
    # one costs ~0.4 ms, which on every delta was a tenth of a worker's time per completion.
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients.setdefault(url, redis.Redis.from_url(url, socket_timeout=5))
    return client


def reply_publish(message_id: str, event: str, data: dict[str, Any]) -> str:
    """Append one event to the reply's stream; final events start its expiry clock."""
    key = _stream_key(message_id)
    pipeline = _client().pipeline(transaction=False)  # one round trip per event
    pipeline.xadd(key, {"event": event, "data": json.dumps(data)})
    pipeline.expire(key, STREAM_TTL_SECONDS)
    entry_id, _ = pipeline.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def reply_stream_exists(message_id: str) -> bool:
    return bool(_client().exists(_stream_key(message_id)))


async def reply_follow(
    message_id: str, *, after: str = "0", block_ms: int = 15000
) -> AsyncIterator[tuple[str, str, dict[str, Any]] | None]:
    """Yield ``(entry_id, event, data)`` from after ``after`` until a final event; yields None
    whenever ``block_ms`` passes with nothing new, so the caller can send a keep-alive."""
    # The read must outlast the server-side BLOCK, or every quiet stream would time out.
    client = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=block_ms / 1000 + 10, socket_connect_timeout=5
    )
    key = _stream_key(message_id)
    try:
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
    finally:
        await client.aclose()


def reply_text_so_far(message_id: str) -> str:
    """The text streamed since the last ``reset``: what a reader has seen of the reply."""
    parts: list[str] = []
    for _, fields in _client().xrange(_stream_key(message_id)):
        event = fields[b"event"].decode()
        if event == "reset":
            parts.clear()
        elif event == "delta":
            parts.append(json.loads(fields[b"data"])["text"])
    return "".join(parts)
