"""project.redis: the Django cache (throttle counters) shares the process's bounded pool."""

import threading

from django.core.cache import caches

from project.redis import redis_client


def test_cache_objects_of_many_threads_share_one_bounded_pool(settings, redis_clean):
    """Django builds a cache object per thread (under ASGI, per request); they all borrow
    from one pool that never grows past its bound, and none fails while waiting."""
    settings.REDIS_POOL_MAX_CONNECTIONS = 4
    barrier = threading.Barrier(100)
    errors: list[Exception] = []
    pools: set[int] = set()

    def count() -> None:
        barrier.wait()
        try:
            cache = caches["default"]
            pools.add(id(cache._cache.get_client().connection_pool))
            cache.get_or_set("hits", 0)
            caches["default"].incr("hits")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=count) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors[:3]
    assert caches["default"].get("hits") == 100
    pool = redis_client().connection_pool
    assert pools == {id(pool)}
    assert len(list(pool._get_free_connections())) + len(list(pool._get_in_use_connections())) <= 4
