"""Per-process caches of what rarely changes and every call reads (API key → user, catalog
entries, model access, rate-limit rules, the budgets that apply), invalidated across processes.

Each cache belongs to a *namespace* whose generation lives in one Redis hash
(``parley:hotcache``). An entry is used only while its namespace's generation is the one it was
loaded under; a change bumps the generation (``bump``), so every process reloads on its next
read. A request reads all generations once, in one ``HGETALL`` (``snapshot``): one Redis round
trip replaces the database reads.

Why it cannot serve a revoked key or a stale limit:
- the bump runs right away **and** again after the transaction commits: a process that
  reloaded between the two (and so may have read the uncommitted, old rows) reloads once more;
- generations start at a random value (``HSETNX``), so a flushed or restarted Redis never
  brings back a generation an old entry was loaded under;
- when Redis cannot be read, nothing is cached: every read goes to the database.

Values handed out are copies (``fresh``) so one request cannot change another's objects."""

import contextlib
import copy
import logging
import secrets
import time
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Generic, TypeVar

import redis
from django.db import models, transaction

from project.redis import redis_client

logger = logging.getLogger("parley.hotcache")
GENERATIONS_KEY = "parley:hotcache"
T = TypeVar("T")
_NAMESPACES: set[str] = set()
# The generations read for the current request, fetched at its first lookup (a holder dict;
# None outside ``snapshot``: then each lookup reads them).
_snapshot: ContextVar[dict | None] = ContextVar("hotcache_snapshot", default=None)
_redis_down_until = 0.0


def _generations() -> dict[str, str] | None:
    """Every namespace's generation, in one round trip; missing ones are created at random
    (a flushed Redis must not bring back an old generation). None when Redis is unreachable
    (then for a second no request tries again: each would wait on the connection)."""
    global _redis_down_until
    if time.monotonic() < _redis_down_until:
        return None
    try:
        client = redis_client()
        found = {k.decode(): v.decode() for k, v in client.hgetall(GENERATIONS_KEY).items()}
        missing = _NAMESPACES - found.keys()
        if missing:
            with client.pipeline(transaction=False) as pipe:
                for namespace in missing:
                    pipe.hsetnx(GENERATIONS_KEY, namespace, secrets.token_hex(8))
                pipe.hgetall(GENERATIONS_KEY)
                *_, latest = pipe.execute()
            found = {k.decode(): v.decode() for k, v in latest.items()}
        return found
    except redis.RedisError:
        _redis_down_until = time.monotonic() + 1.0
        logger.warning("Hot caches bypassed: Redis unavailable", exc_info=True)
        return None


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """Read the generations at most once for everything looked up inside (one request), at
    the first lookup: a request that reads no cache costs no round trip."""
    token = _snapshot.set({})
    try:
        yield
    finally:
        _snapshot.reset(token)


def _generation(namespace: str) -> str | None:
    holder = _snapshot.get()
    if holder is None:
        generations = _generations()
    else:
        if "generations" not in holder:
            holder["generations"] = _generations()
        generations = holder["generations"]
    return generations.get(namespace) if generations is not None else None


def _bump_now(namespaces: tuple[str, ...]) -> None:
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                # A fresh random value, not +1: a value seen before can never come back.
                pipe.hset(GENERATIONS_KEY, namespace, secrets.token_hex(8))
            pipe.execute()
    except redis.RedisError:
        # Cannot invalidate: every process bypasses its caches while Redis is unreachable
        # anyway, and the next bump (or a restart) replaces the generation.
        logger.error("Hot caches not invalidated: Redis unavailable", exc_info=True)


def bump(*namespaces: str) -> None:
    """Invalidate ``namespaces`` in every process: now, and again once the current
    transaction commits (a reload in between may have read the old rows)."""
    _bump_now(namespaces)
    transaction.on_commit(lambda: _bump_now(namespaces))


class HotCache(Generic[T]):
    """One namespace's entries in this process: ``get(key, load)`` returns the cached value
    while the namespace's generation is unchanged, else ``load()`` (and keeps it). Hand out
    only immutable values or copies (``fresh``)."""

    def __init__(self, namespace: str, *, max_entries: int = 20_000) -> None:
        self.namespace = namespace
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[str, T]] = {}
        _NAMESPACES.add(namespace)

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        generation = _generation(self.namespace)
        if generation is None:  # Redis unreachable: never trust what is held
            return load()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation:
            return entry[1]
        value = load()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare; simpler than an LRU and bounded
        self._entries[key] = (generation, value)
        return value


def fresh(instance: models.Model | None) -> models.Model | None:
    """A copy of a cached model instance that shares nothing mutable with it (related objects
    loaded with it are copied too), so callers may change or save it."""
    if instance is None:
        return None
    clone = copy.copy(instance)
    clone._state = copy.copy(instance._state)
    clone._state.fields_cache = {
        name: fresh(related) for name, related in instance._state.fields_cache.items()
    }
    return clone


def invalidate_on_change(namespace: str, *senders: type[models.Model]) -> None:
    """Bump ``namespace`` whenever a row of ``senders`` is saved or deleted (admin, services,
    shells). Bulk ``update()`` calls bypass signals: their services call ``bump`` themselves."""
    from django.db.models.signals import post_delete, post_save

    def changed(sender, raw: bool = False, **kwargs) -> None:
        if not raw:
            bump(namespace)

    for sender in senders:
        uid = f"hotcache:{namespace}:{sender._meta.label}"
        post_save.connect(changed, sender=sender, weak=False, dispatch_uid=uid + ":save")
        post_delete.connect(changed, sender=sender, weak=False, dispatch_uid=uid + ":delete")
