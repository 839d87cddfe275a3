"""Revocation ends access now, not when an open stream happens to end.

Revoking an API key or deactivating a user is written to the database (the truth: every new
request is refused there; per-process caches of users and keys forget them through
``project.hotcache``) and then announced to every process through Redis, once the transaction
commits: one counter per user and per key (``parley:revoked:user:<id>``,
``parley:revoked:key:<id>``) and one global generation (``parley:revoked:generation``), all
``INCR`` in one pipeline. A stream remembers its subjects' counters when it opens; while it is
open, ``until_access_revoked`` looks at the global generation at most once a second per
process (one shared ``GET``, however many streams are open), and only when it moved reads its
own two counters. No clocks are compared, so skewed servers agree.

With Redis unreachable the announcement is lost (logged) and open streams run to their end;
new requests are still refused by the database."""

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import redis
from django.db import transaction

from project.redis import async_redis_client, redis_client

logger = logging.getLogger("parley.accounts")
T = TypeVar("T")

GENERATION_KEY = "parley:revoked:generation"
CHECK_EVERY = 1.0  # seconds: how late a stream may notice a revocation


def _user_key(user_id: int) -> str:
    return f"parley:revoked:user:{user_id}"


def _api_key_key(api_key_id: int) -> str:
    return f"parley:revoked:key:{api_key_id}"


@dataclass(frozen=True, slots=True)
class Revoked:
    """What lost access: a user (all their credentials) and/or some of their API keys."""

    user_id: int | None = None
    api_key_ids: tuple[int, ...] = ()


def access_revoked(*, user_id: int | None = None, api_key_ids: Iterable[int] = ()) -> None:
    """Announce, once the current transaction commits, that ``user_id`` (every credential of
    theirs) and/or ``api_key_ids`` lost access: open streams end within ``CHECK_EVERY`` s.
    Safe to call twice; never raises."""
    revoked = Revoked(user_id=user_id, api_key_ids=tuple(api_key_ids))
    if revoked.user_id is None and not revoked.api_key_ids:
        return
    transaction.on_commit(lambda: _announce(revoked))


def _announce(revoked: Revoked) -> None:
    try:
        pipeline = redis_client().pipeline(transaction=True)
        if revoked.user_id is not None:
            pipeline.incr(_user_key(revoked.user_id))
        for api_key_id in revoked.api_key_ids:
            pipeline.incr(_api_key_key(api_key_id))
        pipeline.incr(GENERATION_KEY)
        pipeline.execute()
    except redis.RedisError:
        logger.warning(
            "Revocation not announced: Redis unavailable; open streams run to their end",
            extra={"user_id": revoked.user_id, "api_key_ids": list(revoked.api_key_ids)},
        )


# --- Watching from an open stream -------------------------------------------------------------

# Per event loop: (monotonic time read, generation). Streams of one loop share one read a second.
_generations: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[float, int]]"
_generations = weakref.WeakKeyDictionary()


async def revocation_generation() -> int | None:
    """The global revocation generation, read from Redis at most once per ``CHECK_EVERY`` s
    per event loop; None when Redis cannot be reached."""
    loop = asyncio.get_running_loop()
    read_at, generation = _generations.get(loop, (float("-inf"), 0))
    if time.monotonic() - read_at < CHECK_EVERY:
        return generation
    _generations[loop] = (time.monotonic(), generation)  # others of this loop wait a second
    try:
        value = await async_redis_client().get(GENERATION_KEY)
    except redis.RedisError:
        return None
    generation = int(value or 0)
    _generations[loop] = (time.monotonic(), generation)
    return generation


class AccessWatch:
    """The revocation counters of one stream's user and key, as they stood when it opened."""

    def __init__(self, *, user_id: int, api_key_id: int | None) -> None:
        self.keys = [_user_key(user_id)] + ([_api_key_key(api_key_id)] if api_key_id else [])
        self.baseline: list[int] | None = None
        self.generation: int | None = None

    async def _counters(self) -> list[int] | None:
        try:
            values = await async_redis_client().mget(self.keys)
        except redis.RedisError:
            return None
        return [int(v or 0) for v in values]

    async def start(self) -> None:
        self.generation = await revocation_generation()
        self.baseline = await self._counters()

    async def revoked(self) -> bool:
        """Whether the user or key was revoked since ``start``: one shared read a second, and
        this stream's own read only when something, somewhere, was revoked."""
        generation = await revocation_generation()
        if generation is None or generation == self.generation:
            return False
        self.generation = generation
        counters = await self._counters()
        if counters is None:
            return False
        if self.baseline is None:  # Redis was out when the stream opened: start from now
            self.baseline = counters
            return False
        return any(now > then for now, then in zip(counters, self.baseline, strict=True))


async def until_access_revoked(
    events: AsyncIterator[T],
    *,
    user_id: int,
    api_key_id: int | None,
    on_revoked: Callable[[], T],
) -> AsyncIterator[T]:
    """``events`` as they come, until the user or key loses access: then ``events`` is closed
    (its ``finally`` blocks run, as when a client goes away) and ``on_revoked()`` is the last
    item. A watcher task looks once a second, also while ``events`` is silent; items pass
    through with no task or timer of their own (a per-item race would cost every token)."""
    watch = AccessWatch(user_id=user_id, api_key_id=api_key_id)
    await watch.start()
    consumer = asyncio.current_task()
    state = {"revoked": False, "waiting": False}

    async def watcher() -> None:
        while not await watch.revoked():
            await asyncio.sleep(CHECK_EVERY)
        state["revoked"] = True
        if state["waiting"]:  # parked on ``events``: interrupt it; else seen at the next item
            consumer.cancel()

    watching = asyncio.create_task(watcher())
    iterator = aiter(events)
    try:
        while not state["revoked"]:
            state["waiting"] = True
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not state["revoked"]:
                    raise  # the client went away, or the server is stopping
                consumer.uncancel()
                break
            finally:
                state["waiting"] = False
            yield item
    finally:
        watching.cancel()
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    yield on_revoked()
