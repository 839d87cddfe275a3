"""Reply streams under pressure, served by uvicorn over real HTTP with real Redis: many
concurrent opens share the process's bounded Redis pools, each user has a cap on open streams,
bad resume ids are refused up front, and a Redis failure mid-stream ends it with an event."""

import asyncio
import json
import threading
import time

import httpx
import pytest

from llm import streams
from project.errors import LimitExceeded
from project.redis import redis_client
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
        pool = streams._async_client().connection_pool
        return results, connections_made(pool)

    results, created = asyncio.run(follow_all())
    assert results == [["delta", "done"]] * 150
    assert created <= 4


def queued_reply(client) -> str:
    """The stream URL of a reply no worker runs: its stream stays open until closed."""
    conversation = start_conversation(client, model().slug)
    posted = send(client, conversation, "a reply nobody writes")
    return message_url(conversation, posted["assistant_message"]["id"]) + "stream/"


class OpenStreams:
    """Streams held open over real HTTP (each read up to its first line), closed on exit."""

    def __init__(self, base: str, client) -> None:
        self.http = httpx.Client(
            base_url=base,
            timeout=10,
            headers={"Authorization": client._credentials["HTTP_AUTHORIZATION"]},
        )
        self.open: list = []

    def get(self, url: str, **headers) -> httpx.Response:
        context = self.http.stream("GET", url, headers=headers)
        response = context.__enter__()
        if response.status_code == 200:
            lines = response.iter_lines()  # kept: dropping it would close the connection
            assert next(lines) == ": stream open"
            self.open.append((context, lines))
        else:
            response.read()
            context.__exit__(None, None, None)
        return response

    def close_one(self) -> None:
        context, _ = self.open.pop(0)
        context.__exit__(None, None, None)

    def __enter__(self) -> "OpenStreams":
        return self

    def __exit__(self, *exc_info) -> None:
        while self.open:
            self.close_one()
        self.http.close()


def eventually_ok(streams_: OpenStreams, url: str, seconds: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = streams_.get(url)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_open_streams_per_user_are_capped_and_freed_by_a_disconnect(
    auth_client, other_client, settings
):
    settings.STREAMS_MAX_PER_USER = 2
    url = queued_reply(auth_client)
    with asgi_server() as base, OpenStreams(base, auth_client) as mine:
        assert mine.get(url).status_code == 200
        assert mine.get(url).status_code == 200
        refused = mine.get(url)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) >= 1

        with OpenStreams(base, other_client) as theirs:  # the cap is per user
            assert theirs.get(queued_reply(other_client)).status_code == 200

        mine.close_one()  # the client goes away: its slot comes back
        assert eventually_ok(mine, url).status_code == 200
        assert mine.get(url).status_code == 429


def test_stream_slots_are_taken_atomically_across_threads(user, settings):
    """Processes share the count in Redis: 40 simultaneous takers, exactly 20 get a slot."""
    settings.STREAMS_MAX_PER_USER = 20
    barrier = threading.Barrier(40)
    taken, refused = [], []

    def take() -> None:
        barrier.wait()
        try:
            taken.append(asyncio.run(streams.stream_slot_acquire(user_id=user.pk)))
        except LimitExceeded:
            refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert (len(set(taken)), len(refused)) == (20, 20)


def test_a_crashed_process_slots_expire_but_open_streams_keep_theirs(auth_client, settings):
    settings.STREAMS_MAX_PER_USER = 1
    settings.STREAMS_SLOT_TTL = 1.5
    user_id = auth_client.get("/api/v1/auth/me/").json()["id"]
    # A process took a slot and died without closing its stream (nothing renews or frees it).
    asyncio.run(streams.stream_slot_acquire(user_id=user_id))
    url = queued_reply(auth_client)
    with asgi_server() as base, OpenStreams(base, auth_client) as mine:
        assert mine.get(url).status_code == 429
        assert eventually_ok(mine, url).status_code == 200  # the dead one expired
        time.sleep(2 * settings.STREAMS_SLOT_TTL)  # the open stream renews its slot meanwhile
        assert mine.get(url).status_code == 429


@pytest.mark.parametrize(
    "last_event_id",
    ["18446744073709551616-0", "1-18446744073709551616", "99999999999999999999", "abc", "1-2-3"],
)
def test_resume_ids_outside_redis_range_are_a_400(auth_client, last_event_id):
    url = finished_reply(auth_client)
    for request in (
        {"HTTP_LAST_EVENT_ID": last_event_id},
        {"QUERY_STRING": f"last_event_id={last_event_id}"},
    ):
        response = auth_client.get(url, **request)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_last_event_id"


def test_the_largest_resume_id_is_accepted(auth_client):
    url = queued_reply(auth_client)
    biggest = f"{2**64 - 1}-{2**64 - 1}"
    with asgi_server() as base, OpenStreams(base, auth_client) as mine:
        assert mine.get(url, **{"Last-Event-ID": biggest}).status_code == 200


def test_a_redis_error_mid_stream_ends_it_with_an_error_event(auth_client, settings, redis_clean):
    settings.STREAMS_SLOT_TTL = 0.9  # renewals, and so reads, every 0.3 s
    url = queued_reply(auth_client)
    message_id = url.rstrip("/").split("/")[-2]
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    with asgi_server() as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("GET", url, headers={"Authorization": token}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == ": stream open"
            # The reply's key becomes something XREAD cannot read: Redis answers an error.
            redis_clean.set(f"parley:reply:{message_id}", "not a stream")
            rest = list(lines)  # ends cleanly, no aborted response
    assert "event: error" in rest
    data = json.loads(next(line for line in rest if line.startswith("data: "))[6:])
    assert data["code"] == "stream_unavailable"


def test_redis_down_when_a_stream_opens(auth_client, settings):
    finished = finished_reply(auth_client)
    waiting = queued_reply(auth_client)
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with asgi_server() as base, httpx.Client(base_url=base, timeout=20) as http:
        # A finished reply is still served from the database...
        response = http.get(finished, headers={"Authorization": token})
        assert response.status_code == 200
        assert "event: done" in response.text
        # ...an unfinished one cannot be followed (nor counted against the cap) without Redis.
        response = http.get(waiting, headers={"Authorization": token})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "stream_unavailable"
        assert response.headers["Retry-After"]


def test_150_concurrent_opens_of_a_live_reply_with_default_settings(auth_client, settings):
    """The probe's case at the defaults: one user opens 150 streams of a reply being waited
    for, all at once. Exactly STREAMS_MAX_PER_USER are served, the rest are told to wait
    (429), and none is a 500."""
    url = queued_reply(auth_client)
    token = auth_client._credentials["HTTP_AUTHORIZATION"]

    async def open_all(base: str) -> list[int]:
        statuses: list[int] = []
        everyone_answered = asyncio.Event()

        async def open_one(http: httpx.AsyncClient) -> None:
            async with http.stream("GET", url) as response:
                lines = response.aiter_lines()  # kept: dropping it would close the stream
                if response.status_code == 200:
                    assert await anext(lines) == ": stream open"
                statuses.append(response.status_code)
                if len(statuses) == 150:
                    everyone_answered.set()
                await everyone_answered.wait()  # hold the stream open until then

        async with httpx.AsyncClient(
            base_url=base,
            timeout=60,
            headers={"Authorization": token},
            limits=httpx.Limits(max_connections=200),
        ) as http:
            await asyncio.gather(*(open_one(http) for _ in range(150)))
        return statuses

    with asgi_server() as base:
        statuses = asyncio.run(open_all(base))

    assert statuses.count(200) == settings.STREAMS_MAX_PER_USER == 20
    assert statuses.count(429) == 130
