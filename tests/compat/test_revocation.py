"""Revocation ends access now: revoking an API key or deactivating its user ends the open
streams made with it — /v1/ streams of every API and conversation reply streams — with an
error event in the stream's own format, within a second or two, over real HTTP with the real
SDKs, against replies that would otherwise go on for a minute."""

import json
import threading

import anthropic
import httpx
import openai
import pytest

from accounts.services import api_key_create, api_key_revoke, user_deactivate
from tests.compat.conftest import faulty_model
from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = [{"role": "user", "content": "Tell me a long story"}]
SLOW = "tps10-len600"  # a minute of text: only revocation ends it early


def sse_events(lines):
    """Events of a reply stream until its last one (``done`` or ``error``)."""
    current = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(": ")
            current[field] = value
            continue
        if current:
            current["data"] = json.loads(current["data"])
            yield current
            if current["event"] in ("done", "error"):
                return
        current = {}


@pytest.fixture
def slow(catalog):
    return {family: faulty_model(family, SLOW) for family in ("openai", "anthropic")}


def test_revoking_a_key_ends_its_chat_completions_stream(openai_client, api_key, slow):
    stream = openai_client.chat.completions.create(
        model=slow["anthropic"].slug, messages=PROMPT, stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 3:
                api_key_revoke(api_key=api_key.api_key)
    assert "revoked" in caught.value.message
    assert caught.value.body["code"] == "access_revoked"
    assert len(received) < 100  # ended early, not at the reply's end


def test_deactivating_the_user_ends_their_messages_stream(anthropic_client, user, slow):
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic_client.messages.stream(
            model=slow["openai"].slug, max_tokens=1000, messages=PROMPT
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
                if len(received) == 3:
                    user_deactivate(user=user)
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert "revoked" in caught.value.body["error"]["message"]
    assert len(received) < 100


def test_revoking_a_key_ends_its_responses_stream(openai_client, api_key, slow):
    received = []
    with pytest.raises(openai.APIError) as caught:
        with openai_client.responses.stream(
            model=slow["openai"].slug, input="Tell me a long story", store=False
        ) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    received.append(event.delta)
                    if len(received) == 3:
                        api_key_revoke(api_key=api_key.api_key)
    assert "revoked" in caught.value.message
    assert len(received) < 100


def test_another_keys_stream_is_untouched(openai_client, user, api_key, catalog):
    """Only what was revoked ends: the same user's other key streams to the end."""
    other = api_key_create(owner=user, name="other")
    fast = faulty_model("openai", "tps100-len60")
    stream = openai_client.chat.completions.create(model=fast.slug, messages=PROMPT, stream=True)
    chunks = 0
    for _ in stream:
        chunks += 1
        if chunks == 3:
            api_key_revoke(api_key=other.api_key)
    assert chunks > 60  # every token and the final chunks arrived


def test_revoking_a_key_ends_its_conversation_reply_stream(parley, user, api_key, settings):
    model = StandinModelFactory(
        slug="slow-chat", provider="openai", provider_model="standin-tps20-len120"
    )
    headers = {"Authorization": f"Bearer {api_key.secret}"}
    with httpx.Client(base_url=parley, timeout=30, headers=headers) as http:
        conversation = http.post("/api/v1/conversations/", json={"model": model.slug}).json()
        posted = http.post(
            f"/api/v1/conversations/{conversation['id']}/messages/", json={"content": "Hi"}
        )
        assert posted.status_code == 202, posted.text
        reply = posted.json()["assistant_message"]["id"]
        url = f"/api/v1/conversations/{conversation['id']}/messages/{reply}/stream/"
        events, errors = [], []
        first_delta = threading.Event()

        def reader():
            try:
                with http.stream("GET", url) as response:
                    for event in sse_events(response.iter_lines()):
                        events.append(event)
                        if event["event"] == "delta":
                            first_delta.set()
            except Exception as exc:  # surfaced in the main thread
                errors.append(exc)
            finally:
                first_delta.set()

        def revoker():
            if first_delta.wait(timeout=30):
                api_key_revoke(api_key=api_key.api_key)

        threads = [threading.Thread(target=reader), threading.Thread(target=revoker)]
        for thread in threads:
            thread.start()
        work_until_idle()  # the reply itself runs on: six seconds of tokens
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert events[-1]["event"] == "error", events[-3:]
    assert events[-1]["data"]["code"] == "access_revoked"
    assert not any(e["event"] == "done" for e in events)


def test_a_silent_reply_stream_ends_too_when_its_user_is_deactivated(parley, user, api_key):
    """No token arrives (the reply waits in the queue: no worker runs): the stream is parked on
    Redis, and revocation still interrupts it."""
    model = StandinModelFactory(slug="queued-chat", provider="openai")
    headers = {"Authorization": f"Bearer {api_key.secret}"}
    with httpx.Client(base_url=parley, timeout=30, headers=headers) as http:
        conversation = http.post("/api/v1/conversations/", json={"model": model.slug}).json()
        posted = http.post(
            f"/api/v1/conversations/{conversation['id']}/messages/", json={"content": "Hi"}
        ).json()
        url = (
            f"/api/v1/conversations/{conversation['id']}/messages/"
            f"{posted['assistant_message']['id']}/stream/"
        )
        with http.stream("GET", url) as response:
            lines = response.iter_lines()
            assert next(lines) == ": stream open"
            user_deactivate(user=user)
            events = list(sse_events(lines))
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["data"]["code"] == "access_revoked"
