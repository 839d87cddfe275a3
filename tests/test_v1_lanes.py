"""``/v1/`` requests run their thread-sensitive work (Django's request signals, closing the
response, where a call's record is written) on a lane lent for the request (project.asgi):
one thread per request at a time, as Django's handler guarantees, but kept for later
requests instead of two threads started and joined per request."""

import asyncio
import threading

import pytest
from django.core.signals import request_finished

from project.asgi import RequestLanes, application


async def _get(path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []
    done = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    done.set()
    return sent[0]["status"]


@pytest.fixture
def finishing_threads():
    names: list[str] = []

    def finished(**kwargs):
        names.append(threading.current_thread().name)

    request_finished.connect(finished, weak=False, dispatch_uid="test-v1-lanes")
    yield names
    request_finished.disconnect(dispatch_uid="test-v1-lanes")


def test_sequential_requests_reuse_one_lane_thread(finishing_threads):
    async def three():
        return [await _get("/v1/models") for _ in range(3)]

    assert asyncio.run(three()) == [401, 401, 401]  # no credentials
    assert len(finishing_threads) == 3
    assert finishing_threads[0].startswith("v1-lane")
    assert len(set(finishing_threads)) == 1  # the same lane, not a thread per request


def test_concurrent_requests_never_share_a_lane():
    lanes = RequestLanes(keep=2)
    first, second = lanes.borrow(), lanes.borrow()
    assert first is not second
    third = lanes.borrow()
    for lane in (first, second, third):
        lanes.give_back(lane)
    assert lanes.idle == [first, second]  # at most ``keep`` idle lanes are kept
    assert third._shutdown  # the others are shut down
    assert lanes.borrow() is second
