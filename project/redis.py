"""The process's Redis clients: one synchronous client per URL, one asyncio client per URL and
event loop, each on an explicit, bounded, *blocking* connection pool.

Why one place: a client per call (or per stream) means a pool per call, and redis-py's default
pool raises ``MaxConnectionsError`` the moment it is full, which under load became 500s. A
``BlockingConnectionPool`` instead makes the caller wait up to ``REDIS_POOL_TIMEOUT`` seconds
for a free connection, then raises ``redis.ConnectionError`` (a ``RedisError`` callers already
handle). Both clients are safe to share: the sync one between threads (its pool is locked), the
asyncio one between the tasks of its loop (an asyncio connection belongs to the loop that made
it, hence one per loop; a server has one loop per process).

Settings: ``REDIS_POOL_MAX_CONNECTIONS`` (per pool), ``REDIS_POOL_TIMEOUT`` (seconds to wait for
a free connection), ``REDIS_SOCKET_TIMEOUT`` and ``REDIS_SOCKET_CONNECT_TIMEOUT``."""

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_lock = threading.Lock()
_sync_clients: dict[tuple, redis.Redis] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, aioredis.Redis]]"
_async_clients = weakref.WeakKeyDictionary()


def _pool_options(socket_timeout: float | None) -> dict:
    return {
        "max_connections": settings.REDIS_POOL_MAX_CONNECTIONS,
        "timeout": settings.REDIS_POOL_TIMEOUT,
        "socket_timeout": socket_timeout or settings.REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": settings.REDIS_SOCKET_CONNECT_TIMEOUT,
        "health_check_interval": 30,  # re-check a connection idle this long before using it
    }


def _key(url: str, options: dict) -> tuple:
    # Settings are part of the key, so a changed setting (tests, reconfiguration) gets its pool.
    return (url, *sorted(options.items()))


def redis_client(url: str | None = None) -> redis.Redis:
    """The process's synchronous client for ``url`` (default ``REDIS_URL``)."""
    url = url or settings.REDIS_URL
    options = _pool_options(None)
    key = _key(url, options)
    client = _sync_clients.get(key)
    if client is None:
        with _lock:
            client = _sync_clients.get(key)
            if client is None:
                pool = redis.BlockingConnectionPool.from_url(url, **options)
                client = _sync_clients[key] = redis.Redis(connection_pool=pool)
    return client


def async_redis_client(
    url: str | None = None, *, socket_timeout: float | None = None
) -> aioredis.Redis:
    """The running event loop's asyncio client for ``url`` (default ``REDIS_URL``).

    ``socket_timeout`` is for clients that issue blocking reads (``XREAD BLOCK``): the socket
    must wait longer than the server does. Call from a coroutine."""
    url = url or settings.REDIS_URL
    options = _pool_options(socket_timeout)
    key = _key(url, options)
    loop = asyncio.get_running_loop()
    with _lock:  # loops of other threads may be adding theirs
        clients = _async_clients.setdefault(loop, {})
    client = clients.get(key)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(url, **options)
        client = clients[key] = aioredis.Redis(connection_pool=pool)
    return client


class _SharedPoolCacheClient(RedisCacheClient):
    def _get_connection_pool(self, write):
        return redis_client(self._servers[self._get_connection_pool_index(write)]).connection_pool


class RedisCache(DjangoRedisCache):
    """Django's Redis cache on the process's shared pool. Django builds a cache object (and so
    a pool) per thread, and under ASGI every request runs in a new thread: a connection per
    request, with no bound. This one borrows from ``redis_client()``'s bounded pool."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _SharedPoolCacheClient
