"""The whole completion flow, as a client sees it, with everything real: the API, PostgreSQL
(on CI), Redis, RQ workers, the openai/anthropic SDKs and the stand-in provider over HTTP, and
Server-Sent Events read by a real HTTP client from the app served by uvicorn."""

import json
import threading
import time

import httpx
import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from jobs.models import Job
from llm.models import Message, Usage
from llm.providers import completion_cost_micros, estimate_tokens
from project.money import usd
from tests.live import asgi_server, work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_retries(settings, standin):
    settings.JOBS_BACKOFF_BASE = 0.05
    settings.JOBS_BACKOFF_MAX = 0.2


def model(provider: str = "openai", provider_model: str = "standin-chat", slug: str | None = None):
    return StandinModelFactory(
        slug=slug or f"{provider}-{provider_model}",
        provider=provider,
        provider_model=provider_model,
    )


def start_conversation(client, slug, **extra) -> str:
    response = client.post("/api/v1/conversations/", {"model": slug, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def send(client, conversation_id, content="Hello, Parley", **headers) -> dict:
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages/",
        {"content": content},
        format="json",
        **headers,
    )
    assert response.status_code == 202, response.content
    return response.json()


def message_url(conversation_id, message_id) -> str:
    return f"/api/v1/conversations/{conversation_id}/messages/{message_id}/"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_whole_flow(auth_client, provider):
    entry = model(provider)
    conversation = start_conversation(auth_client, entry.slug, system_prompt="Be brief.")
    posted = send(auth_client, conversation, "What is Parley?")
    work_until_idle()

    reply = auth_client.get(message_url(conversation, posted["assistant_message"]["id"])).json()
    assert reply["status"] == "completed"
    assert reply["content"].startswith('You said: "What is Parley?". (Following a system prompt')
    assert reply["finish_reason"] == "stop"
    assert reply["output_tokens"] == 24 and reply["input_tokens"] > 0
    expected = completion_cost_micros(
        input_tokens=reply["input_tokens"],
        output_tokens=reply["output_tokens"],
        input_price_per_mtok=entry.input_price_per_mtok,
        output_price_per_mtok=entry.output_price_per_mtok,
    )
    assert reply["cost"] == str(usd(expected))
    assert reply["latency_ms"] is not None and reply["time_to_first_token_ms"] is not None
    assert auth_client.get(f"/api/v1/jobs/{posted['job']['id']}/").json()["status"] == "completed"

    usage = auth_client.get("/api/v1/usage/").json()["total"]
    assert usage["requests"] == 1
    assert usage["output_tokens"] == 24
    assert usage["cost"] == str(usd(expected))

    # The next turn carries the conversation so far.
    second = send(auth_client, conversation, "And who runs it?")
    work_until_idle()
    reply = Message.objects.get(pk=second["assistant_message"]["id"])
    assert reply.content.startswith('You said: "And who runs it?"')
    assert (
        reply.input_tokens
        > auth_client.get(message_url(conversation, posted["assistant_message"]["id"])).json()[
            "input_tokens"
        ]
    )


def test_rate_limited_then_succeeds_and_usage_counts_once(auth_client):
    entry = model("anthropic", "standin-flaky")
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation, "flaky once")
    work_until_idle()
    job = Job.objects.get(pk=posted["job"]["id"])
    assert job.status == "completed" and job.attempts == 2
    reply = Message.objects.get(pk=posted["assistant_message"]["id"])
    assert reply.status == "completed" and reply.content
    assert Usage.objects.filter(message=reply).count() == 1


def test_permanent_failure(auth_client):
    entry = model("openai", "standin-400")
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation)
    work_until_idle()
    reply = auth_client.get(message_url(conversation, posted["assistant_message"]["id"])).json()
    assert reply["status"] == "failed"
    assert "400" in reply["error"]
    job = auth_client.get(f"/api/v1/jobs/{posted['job']['id']}/").json()
    assert job["status"] == "failed" and job["attempts"] == 1 and "400" in job["error"]
    assert not Usage.objects.exists()
    # The conversation is usable again, and retrying the job is refused for a completed one only.
    assert (
        auth_client.post(f"/api/v1/jobs/{posted['job']['id']}/retry/").json()["status"] == "queued"
    )
    assert (
        auth_client.get(message_url(conversation, posted["assistant_message"]["id"])).json()[
            "status"
        ]
        == "queued"
    )


def test_transient_failures_exhaust_attempts(auth_client, settings):
    settings.JOBS_MAX_ATTEMPTS = 2
    entry = model("openai", "standin-500")
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation)
    work_until_idle()
    reply = Message.objects.get(pk=posted["assistant_message"]["id"])
    assert reply.status == "failed"
    assert "gave up after 2 attempts" in reply.error


def test_cancel_a_queued_reply(auth_client):
    entry = model()
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation)
    assert auth_client.post(f"/api/v1/jobs/{posted['job']['id']}/cancel/").status_code == 200
    work_until_idle()
    reply = Message.objects.get(pk=posted["assistant_message"]["id"])
    assert reply.status == "cancelled" and reply.content == ""
    assert Job.objects.get(pk=posted["job"]["id"]).attempts == 0


def test_cancel_a_reply_being_written_keeps_the_partial_text(auth_client):
    entry = model("anthropic", "standin-tps40-len400")  # ten seconds of reply
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation)
    message_id = posted["assistant_message"]["id"]
    client = redis.Redis.from_url(settings.REDIS_URL)

    def cancel_midway():
        deadline = time.monotonic() + 10
        while client.xlen(f"parley:reply:{message_id}") < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        auth_client.post(f"/api/v1/jobs/{posted['job']['id']}/cancel/")

    canceller = threading.Thread(target=cancel_midway)
    canceller.start()
    started = time.monotonic()
    work_until_idle()
    canceller.join()
    assert time.monotonic() - started < 5
    reply = Message.objects.get(pk=message_id)
    assert reply.status == "cancelled"
    assert reply.content.startswith("You said:")
    assert 4 <= len(reply.content.split()) < 400
    assert Job.objects.get(pk=posted["job"]["id"]).status == "cancelled"
    # Charged like an abandoned /v1/ stream (one policy, llm.lifecycle): the prompt's
    # estimate and the text produced by the time of the cancel, once, on the reply.
    usage = Usage.objects.get()
    assert usage.message_id == reply.pk and usage.input_tokens > 0
    assert 0 < usage.output_tokens <= estimate_tokens(reply.content)
    assert (reply.input_tokens, reply.output_tokens, reply.cost_micros) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cost_micros,
    )


def test_redis_down_at_post_then_delivered_after_recovery(auth_client, settings):
    entry = model()
    conversation = start_conversation(auth_client, entry.slug)
    good = settings.RQ_QUEUES
    settings.RQ_QUEUES = {
        name: {**config, "URL": "redis://127.0.0.1:1/0"} for name, config in good.items()
    }
    posted = send(auth_client, conversation)  # still 202: the job waits in the database
    settings.RQ_QUEUES = good
    settings.JOBS_ENQUEUE_GRACE = 0
    call_command("reconcile_jobs", stdout=open("/dev/null", "w"))
    work_until_idle()
    assert Message.objects.get(pk=posted["assistant_message"]["id"]).status == "completed"


def test_idempotent_post_runs_one_completion(auth_client):
    entry = model()
    conversation = start_conversation(auth_client, entry.slug)
    first = send(auth_client, conversation, HTTP_IDEMPOTENCY_KEY="abc")
    work_until_idle()
    again = send(auth_client, conversation, HTTP_IDEMPOTENCY_KEY="abc")
    assert again["assistant_message"]["id"] == first["assistant_message"]["id"]
    assert again["assistant_message"]["status"] == "completed"
    assert Job.objects.count() == 1 and Usage.objects.count() == 1


def read_events(response, stop_after: int | None = None) -> list[dict]:
    """Parse an SSE stream into events until `done`/`error` (or `stop_after` deltas)."""
    events, current, deltas = [], {}, 0
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                current["data"] = json.loads(current["data"])
                events.append(current)
                if current["event"] == "delta":
                    deltas += 1
                if current["event"] in ("done", "error") or (stop_after and deltas >= stop_after):
                    return events
            current = {}
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return events


def test_streaming_with_resume_over_real_http(auth_client, user):
    entry = model("openai", "standin-tps60-len60")
    conversation = start_conversation(auth_client, entry.slug)
    posted = send(auth_client, conversation, "stream please")
    message_id = posted["assistant_message"]["id"]
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    first_part, second_part, errors = [], [], []

    with asgi_server() as base:
        url = base + message_url(conversation, message_id) + "stream/"

        def reader():
            try:
                with httpx.Client(timeout=30, headers={"Authorization": token}) as http:
                    with http.stream("GET", url) as response:
                        assert response.headers["content-type"].startswith("text/event-stream")
                        first_part.extend(read_events(response, stop_after=10))
                    last_id = first_part[-1]["id"]
                    with http.stream("GET", url, headers={"Last-Event-ID": last_id}) as response:
                        second_part.extend(read_events(response))
            except Exception as exc:  # surfaced in the main thread
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        work_until_idle()
        thread.join(timeout=30)

        assert not errors, errors
        stored = Message.objects.get(pk=message_id)
        events = first_part + second_part
        ids = [e["id"] for e in events]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(
            set(ids)
        ) == len(ids)
        text = "".join(e["data"]["text"] for e in events if e["event"] == "delta")
        assert text == stored.content  # no gaps, no duplicates
        assert events[-1]["event"] == "done"
        assert events[-1]["data"]["message"]["status"] == "completed"
        assert events[-1]["data"]["message"]["content"] == stored.content

        # A finished reply streams its whole text and `done` at once...
        with httpx.Client(timeout=10, headers={"Authorization": token}) as http:
            with http.stream("GET", url) as response:
                replay = read_events(response)
        assert "".join(e["data"]["text"] for e in replay if e["event"] == "delta") == stored.content
        # ...also once the live stream has expired from Redis.
        redis.Redis.from_url(settings.REDIS_URL).delete(f"parley:reply:{message_id}")
        with httpx.Client(timeout=10, headers={"Authorization": token}) as http:
            with http.stream("GET", url) as response:
                expired = read_events(response)
        assert [e["event"] for e in expired] == ["delta", "done"]
        assert expired[0]["data"]["text"] == stored.content


def test_open_streams_do_not_hold_database_connections(auth_client, settings):
    """More open streams than the connection pool holds, and other requests still work
    (each stream gives its connection back before it starts waiting on Redis)."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {})
    streams = pool.get("max_size", 10) + 2
    entry = model()
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    urls = []
    for index in range(streams):
        conversation = start_conversation(auth_client, entry.slug)
        posted = send(auth_client, conversation, f"waiting {index}")
        urls.append(message_url(conversation, posted["assistant_message"]["id"]) + "stream/")

    with (
        asgi_server() as base,
        httpx.Client(base_url=base, timeout=10, headers={"Authorization": token}) as http,
    ):
        opened = [http.stream("GET", url) for url in urls]
        responses = [stream.__enter__() for stream in opened]
        try:
            assert all(r.status_code == 200 for r in responses)
            started = time.monotonic()
            me = http.get("/api/v1/auth/me/")
            assert me.status_code == 200
            assert time.monotonic() - started < 5
        finally:
            for stream in opened:
                stream.__exit__(None, None, None)
