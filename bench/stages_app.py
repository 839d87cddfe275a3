"""The ASGI application of ``bench/gateway_stages.py``: Parley's (``project.asgi``) with timers
around the stages of a ``/v1/chat/completions`` call and every garbage collection. For
measuring only: it replaces module attributes at import, so never serve it.

Each event is (stage, start, end, thread); the process writes them as JSON to
``STAGES_OUT`` on SIGUSR1."""

import functools
import gc
import inspect
import json
import os
import signal
import threading
import time

from project.asgi import application as parley  # first: it sets Django up

EVENTS: list[tuple[str, float, float, str]] = []


def _record(stage: str, started: float) -> None:
    EVENTS.append((stage, started, time.perf_counter(), threading.current_thread().name))


def _timed(owner, name: str, stage: str) -> None:
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                _record(stage, started)
    else:

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _record(stage, started)

    setattr(owner, name, wrapper)


def _install() -> None:
    """Timers around the stages (module attributes replaced where callers look them up)."""
    import django.core.handlers.asgi as django_asgi
    from django.core import signals
    from psycopg_pool import ConnectionPool

    from llm.compat import gateway, openai_chat
    from project import hotcache

    # The view looks these up in its own module, the gateway in its own: patch them there.
    _timed(openai_chat, "call_open", "open: the hop to a thread and back")
    _timed(gateway, "_open", "open: in the thread")
    _timed(gateway, "caller_authenticate", "open: authenticate (cached key)")
    _timed(gateway, "team_for_call", "open: team (cached)")
    _timed(gateway, "call_admit", "open: admit (budgets, limits)")
    _timed(hotcache, "_generations", "Redis: hot-cache generations")
    _timed(openai_chat, "call_complete", "provider call (SDK, upstream)")
    _timed(gateway, "_finish_quietly", "record after the response")
    _timed(ConnectionPool, "getconn", "PostgreSQL: pool checkout (with health check)")

    send_response = django_asgi.ASGIHandler.send_response

    async def _timed_send_response(self, response, send):
        started = time.perf_counter()
        try:
            return await send_response(self, response, send)
        finally:
            _record("send the response", started)

    django_asgi.ASGIHandler.send_response = _timed_send_response
    asend = type(signals.request_started).asend

    async def _timed_asend(self, sender, **named):
        started = time.perf_counter()
        try:
            return await asend(self, sender, **named)
        finally:
            if self is signals.request_started:
                _record("request_started signal (a thread hop)", started)

    type(signals.request_started).asend = _timed_asend


_gc_started: dict[int, float] = {}


def _gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[info["generation"]] = time.perf_counter()
    elif info["generation"] in _gc_started:
        _record(f"gc generation {info['generation']}", _gc_started.pop(info["generation"]))


gc.callbacks.append(_gc)
_install()


async def application(scope, receive, send):
    if scope["type"] != "http":
        return await parley(scope, receive, send)
    started = time.perf_counter()
    sent: list[float] = []

    async def timed_send(message):
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            sent.append(time.perf_counter())

    await parley(scope, receive, timed_send)
    EVENTS.append(("REQUEST", started, sent[0] if sent else time.perf_counter(), ""))


def _dump(*_) -> None:
    with open(os.environ["STAGES_OUT"], "w") as out:
        json.dump({"events": EVENTS, "frozen": gc.get_freeze_count()}, out)


signal.signal(signal.SIGUSR1, _dump)
