"""ASGI entry point: the server Parley runs under, so Server-Sent Events streams are cheap
async tasks instead of blocked threads.

``/v1/`` (the compatible API: every SDK call, the hot path) has its own Django handler whose
middleware chain leaves out the browser machinery and runs natively async
(``project.v1_middleware``): with the full chain, the sync-only static-files
middleware alone put every call in a worker thread around the async view, and each
``MiddlewareMixin`` hook cost a thread hop. Everything else gets the full chain."""

import gc
import os
from concurrent.futures import ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.production")
django_application = get_asgi_application()

from asgiref.sync import ThreadSensitiveContext  # noqa: E402
from django.conf import settings  # noqa: E402  needs settings loaded
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from project.middleware import BodyLimitASGIMiddleware  # noqa: E402
from project.v1_middleware import v1_middleware  # noqa: E402


class RequestLanes:
    """Single-thread executors lent to one request at a time for its thread-sensitive work:
    Django's ``request_started``/``request_finished`` receivers and closing the response
    (where a ``/v1/`` call's record is written). Django's handler makes a new executor for
    each request, which starts two threads per request (its worker, then one to join it); a
    lane gives the same guarantee (one thread, serving one request at a time) and is kept for
    a later request. At most ``keep`` idle lanes are kept; the rest are shut down. Used from
    the event loop's thread only."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []

    def borrow(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="v1-lane")

    def give_back(self, lane: ThreadPoolExecutor) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(lane)
        else:
            lane.shutdown(wait=False)


class V1Handler(ASGIHandler):
    lanes = RequestLanes(keep=64)

    async def __call__(self, scope, receive, send) -> None:
        # As Django's, with a lent lane instead of a new executor (and threads) per request.
        lane = self.lanes.borrow()
        try:
            async with ThreadSensitiveContext(executor=lane):
                await self.handle(scope, receive, send)
        finally:
            self.lanes.give_back(lane)

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE; swapped only while this one
        # handler is built, once at start-up, before any request.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = v1_middleware(full)
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


v1_application = V1Handler()


async def _dispatch(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        return await v1_application(scope, receive, send)
    return await django_application(scope, receive, send)


application = BodyLimitASGIMiddleware(_dispatch)


def heap_freeze() -> None:
    """Move everything loaded so far out of the cyclic garbage collector's view: it lives as
    long as the process. Without this, every full (generation 2) collection walked the whole
    start-up heap (~290,000 objects: Django, DRF, the SDKs, the URLconf), a 96-166 ms pause of
    the event loop (measured on the 2-core bench machine), and so of every request in flight,
    every few thousand requests. The URLconf, which Django would import at the first request,
    is loaded first so that it is frozen too."""
    get_resolver().url_patterns  # noqa: B018  imports every view module now
    gc.collect()
    gc.freeze()


heap_freeze()
