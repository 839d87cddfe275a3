"""Probes for load balancers and orchestrators; no authentication, no sessions."""

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from project.api.errors import error_response


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means not ready
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return type(exc).__name__
    finally:
        client.close()
    return None


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Database and Redis both answer; otherwise 503 naming the one(s) that failed."""
    failures = {
        name: err
        for name, err in (("database", _check_database()), ("redis", _check_redis()))
        if err
    }
    if failures:
        return error_response(
            503,
            "not_ready",
            "Unavailable: " + ", ".join(sorted(failures)) + " unreachable.",
            details={
                "database": failures.get("database", "ok"),
                "redis": failures.get("redis", "ok"),
            },
        )
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok"})
