"""Redis is a delivery mechanism, not the source of truth: with Redis really stopped, signing
in, creating a conversation and posting a message still work (or say 503, never 500), and the
stored post is delivered once Redis is back."""

import openai
import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create
from budgets.services import rate_limit_set
from conftest import PASSWORD
from jobs.services import jobs_reconcile
from llm.models import Message
from tests.live import asgi_server, private_redis, work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_server(tmp_path, settings):
    with private_redis(tmp_path, settings) as server:
        yield server


def test_a_post_made_while_redis_is_down_is_delivered_after_recovery(
    redis_server, standin, user, settings
):
    model = StandinModelFactory(slug="gpt-standin", provider="openai")
    rate_limit_set(user=user, requests_per_minute=100, tokens_per_minute=100_000)
    redis_server.stop()
    client = APIClient()

    login = client.post(
        "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200, login.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {login.json()['access']}")
    created = client.post("/api/v1/conversations/", {"model": model.slug}, format="json")
    assert created.status_code == 201, created.content
    conversation = created.json()["id"]
    posted = client.post(
        f"/api/v1/conversations/{conversation}/messages/", {"content": "Hi"}, format="json"
    )
    assert posted.status_code == 202, posted.content
    reply_id = posted.json()["assistant_message"]["id"]
    assert Message.objects.get(pk=reply_id).status == "queued"

    redis_server.start()
    settings.JOBS_ENQUEUE_GRACE = 0  # the post is seconds old; a deployment waits 30 s
    jobs_reconcile()  # what the scheduler runs every JOBS_RECONCILE_INTERVAL s
    work_until_idle()
    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "completed" and reply.content


def test_v1_calls_are_served_while_redis_is_down(redis_server, standin, user, settings):
    """Rate limits fail open; the call itself needs only the database and the provider."""
    StandinModelFactory(slug="gpt-standin", provider="openai")
    rate_limit_set(user=user, requests_per_minute=100, tokens_per_minute=100_000)
    secret = api_key_create(owner=user, name="sdk").secret
    redis_server.stop()
    with asgi_server() as base_url:
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0) as client:
            reply = client.chat.completions.create(
                model="gpt-standin", messages=[{"role": "user", "content": "Hi"}]
            )
            assert reply.choices[0].message.content
            stream = client.chat.completions.create(
                model="gpt-standin", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            # A stored response is stored but cannot be followed: it is answered as it stands,
            # queued, and delivered once Redis is back (a 503 would invite a second post).
            queued = client.responses.create(model="gpt-standin", input="Hi")
            assert queued.status == "queued"

            redis_server.start()
            settings.JOBS_ENQUEUE_GRACE = 0
            jobs_reconcile()
            work_until_idle()
            delivered = client.responses.retrieve(queued.id)
            assert delivered.status == "completed" and delivered.output_text
            assert Message.objects.filter(role="assistant").count() == 1  # posted once
