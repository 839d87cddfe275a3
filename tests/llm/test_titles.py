"""Automatic titles: an untitled conversation is titled after its first reply by the model in
LLM_TITLE_MODEL, in a job of its own, once, counted as the owner's usage; a failure leaves
the title empty and never touches the reply. Real workers, SDKs and stand-in."""

import django_rq
import pytest
from rq.worker import SimpleWorker

from jobs.models import Job
from llm.models import Usage
from llm.titles import TITLE_INSTRUCTIONS, TITLE_JOB_KIND
from tests.live import work_until_idle
from tests.llm.conftest import CONVERSATIONS, QUESTION, conversation_start, message_send
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_title_after_the_first_reply_once_and_counted(
    auth_client, chat_model, title_model, standin
):
    conversation = conversation_start(auth_client, chat_model)
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == ""
    posted = message_send(auth_client, conversation)
    work_until_idle()

    title = auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"]
    assert title and len(title) <= 80
    request = next(r for r in reversed(standin.received) if r.body and r.body.get("system"))
    assert request.body["system"] == TITLE_INSTRUCTIONS
    assert request.body["model"] == "standin-chat" and request.body["max_tokens"] == 24
    assert QUESTION in request.body["messages"][0]["content"]
    reply = Job.objects.get(pk=posted["job"]["id"])
    titling = Job.objects.get(kind=TITLE_JOB_KIND)
    assert titling.status == "completed" and titling.queue == "default"
    assert titling.started_at >= reply.finished_at  # the reply never waited for it

    # Counted as the owner's usage, at the title model's prices.
    title_usage = Usage.objects.get(model=title_model)
    assert title_usage.user.email == auth_client.get("/api/v1/auth/me/").json()["email"]
    assert title_usage.message is None and title_usage.output_tokens > 0
    report = auth_client.get("/api/v1/usage/").json()
    assert report["total"]["requests"] == 2
    assert {row["model"] for row in report["by_model"]} == {chat_model.slug, title_model.slug}

    # Later replies do not title it again.
    message_send(auth_client, conversation, "And rye bread?")
    work_until_idle()
    assert Job.objects.filter(kind=TITLE_JOB_KIND).count() == 1
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == title
    assert Usage.objects.filter(model=title_model).count() == 1


def test_a_titled_conversation_is_left_alone(auth_client, chat_model, title_model):
    conversation = conversation_start(auth_client, chat_model, title="Bread")
    message_send(auth_client, conversation)
    work_until_idle()
    assert not Job.objects.filter(kind=TITLE_JOB_KIND).exists()
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == "Bread"


def test_off_without_a_title_model(auth_client, chat_model, settings):
    settings.LLM_TITLE_MODEL = ""
    conversation = conversation_start(auth_client, chat_model)
    message_send(auth_client, conversation)
    work_until_idle()
    assert not Job.objects.filter(kind=TITLE_JOB_KIND).exists()
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == ""


def test_a_failing_title_model_leaves_the_title_empty(auth_client, chat_model, settings, standin):
    failing = StandinModelFactory(slug="titles-broken", provider_model="standin-400")
    settings.LLM_TITLE_MODEL = failing.slug
    conversation = conversation_start(auth_client, chat_model)
    posted = message_send(auth_client, conversation)
    work_until_idle()
    reply = auth_client.get(
        f"{CONVERSATIONS}{conversation}/messages/{posted['assistant_message']['id']}/"
    ).json()
    assert reply["status"] == "completed"
    assert Job.objects.get(kind=TITLE_JOB_KIND).status == "failed"
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == ""
    assert Usage.objects.count() == 1  # the reply only


def test_the_owners_own_title_wins(auth_client, chat_model, title_model):
    conversation = conversation_start(auth_client, chat_model)
    message_send(auth_client, conversation)
    # Only the reply runs; the title job waits on its own queue.
    django_rq.get_worker("completions", worker_class=SimpleWorker).work(burst=True)
    assert Job.objects.get(kind=TITLE_JOB_KIND).status == "queued"
    auth_client.patch(f"{CONVERSATIONS}{conversation}/", {"title": "My own"}, format="json")
    work_until_idle()
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == "My own"
    assert not Usage.objects.filter(model=title_model).exists()
