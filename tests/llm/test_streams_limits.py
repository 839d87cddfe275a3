"""Reply streams under pressure, served by uvicorn over real HTTP with real Redis: many
concurrent opens share the process's bounded Redis pools, each user has a cap on open streams,
bad resume ids are refused up front, and a Redis failure mid-stream ends it with an event."""

import asyncio
import threading

import httpx
import pytest

from llm import streams
from project.redis import async_redis_client, redis_client
from tests.live import asgi_server, work_until_idle
from tests.llm.test_completion_flow import message_url, model, send, start_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def provider(standin):
    return standin


def connections_made(pool) -> int:
    return len(list(pool._get_free_connections())) + len(list(pool._get_in_use_connections()))


def finished_reply(client) -> str:
    """The stream URL of a completed reply whose live stream is still in Redis."""
    conversation = start_conversation(client, model().slug)
    posted = send(client, conversation, "a reply to read many times")
    work_until_idle()
    return message_url(conversation, posted["assistant_message"]["id"]) + "stream/"


async def read_stream(http: httpx.AsyncClient, url: str, **headers) -> tuple[int, list[str]]:
    """Status and the event names of one whole stream."""
    async with http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, []
        names = [
            line.removeprefix("event: ")
            async for line in response.aiter_lines()
            if line.startswith("event: ")
        ]
        return 200, names


def test_150_concurrent_opens_by_one_user_wait_for_the_bounded_pool(auth_client, settings):
    """Far more simultaneous streams than the Redis pools hold: they queue for a connection
    instead of failing (redis-py's default pool raised MaxConnectionsError: 500s)."""
    settings.REDIS_POOL_MAX_CONNECTIONS = 8
    settings.STREAMS_MAX_PER_USER = 1000
    url = finished_reply(auth_client)
    token = auth_client._credentials["HTTP_AUTHORIZATION"]

    async def open_all(base: str) -> list[tuple[int, list[str]]]:
        async with httpx.AsyncClient(
            base_url=base,
            timeout=60,
            headers={"Authorization": token},
            limits=httpx.Limits(max_connections=200),
        ) as http:
            return await asyncio.gather(*(read_stream(http, url) for _ in range(150)))

    with asgi_server() as base:
        results = asyncio.run(open_all(base))

    statuses = [status for status, _ in results]
    assert statuses.count(200) == 150, sorted(set(statuses))
    assert all(names[-1] == "done" for _, names in results)


def test_threads_share_one_bounded_blocking_pool(settings, redis_clean):
    """150 threads released at once all get their answer from one client whose pool never
    grows past its bound (they wait their turn instead of raising MaxConnectionsError)."""
    settings.REDIS_POOL_MAX_CONNECTIONS = 4
    streams.reply_publish("m-1", "delta", {"text": "hi"})
    barrier = threading.Barrier(150)
    clients, answers, errors = set(), [], []

    def reader() -> None:
        barrier.wait()
        try:
            clients.add(id(redis_client()))
            answers.append(streams.reply_stream_exists("m-1"))
            answers.append(streams.reply_text_so_far("m-1"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors[:3]
    assert answers.count(True) == 150 and answers.count("hi") == 150
    assert len(clients) == 1
    assert connections_made(redis_client().connection_pool) <= 4


def test_concurrent_followers_in_one_loop_share_one_bounded_pool(settings, redis_clean):
    settings.REDIS_POOL_MAX_CONNECTIONS = 4
    streams.reply_publish("m-2", "delta", {"text": "hi"})
    streams.reply_publish("m-2", "done", {"message": {}})

    async def follow() -> list[str]:
        return [item[1] async for item in streams.reply_follow("m-2") if item]

    async def follow_all() -> tuple[list, int]:
        results = await asyncio.gather(*(follow() for _ in range(150)))
        pool = async_redis_client(socket_timeout=25).connection_pool
        return results, connections_made(pool)

    results, created = asyncio.run(follow_all())
    assert results == [["delta", "done"]] * 150
    assert created <= 4
