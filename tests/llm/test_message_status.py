"""A reply's status changes only through ``message_transition``: allowed moves succeed, others
and lost races are refused, and the stream's final event shows the reply as the API does."""

import json
import threading

import pytest
import redis
from django.conf import settings
from django.db import connection

from llm.models import Message, MessageRole, MessageStatus
from llm.services import message_transition
from project.errors import InvalidTransition
from tests.live import work_until_idle
from tests.llm.factories import ConversationFactory, StandinModelFactory


def reply(conversation, status=MessageStatus.QUEUED) -> Message:
    return Message.objects.create(
        conversation=conversation,
        position=conversation.messages.count() + 1,
        role=MessageRole.ASSISTANT,
        status=status,
        model=conversation.model,
    )


@pytest.mark.django_db
class TestTransitions:
    def test_allowed_moves_write_fields_and_timestamps(self, user):
        message = reply(ConversationFactory(owner=user))
        message_transition(message=message, to=MessageStatus.IN_PROGRESS, content="")
        message_transition(message=message, to=MessageStatus.COMPLETED, content="Hi")
        stored = Message.objects.get(pk=message.pk)
        assert stored.status == MessageStatus.COMPLETED and stored.content == "Hi"
        assert stored.completed_at is not None

    def test_a_completed_reply_cannot_change(self, user):
        message = reply(ConversationFactory(owner=user), MessageStatus.COMPLETED)
        for status in (MessageStatus.QUEUED, MessageStatus.FAILED, MessageStatus.CANCELLED):
            with pytest.raises(InvalidTransition):
                message_transition(message=message, to=status)
        assert Message.objects.get(pk=message.pk).status == MessageStatus.COMPLETED

    def test_a_stale_copy_loses_to_the_stored_status(self, user):
        message = reply(ConversationFactory(owner=user), MessageStatus.IN_PROGRESS)
        stale = Message.objects.get(pk=message.pk)
        message_transition(message=message, to=MessageStatus.CANCELLED)
        with pytest.raises(InvalidTransition, match="cancelled now"):
            message_transition(message=stale, to=MessageStatus.COMPLETED, content="late")
        stored = Message.objects.get(pk=message.pk)
        assert stored.status == MessageStatus.CANCELLED and stored.content == ""

    def test_a_retried_reply_is_queued_again_without_its_finish_time(self, user):
        message = reply(ConversationFactory(owner=user), MessageStatus.FAILED)
        Message.objects.filter(pk=message.pk).update(completed_at="2026-01-01T00:00:00Z")
        message_transition(message=message, to=MessageStatus.QUEUED)
        assert Message.objects.get(pk=message.pk).completed_at is None


@pytest.mark.django_db(transaction=True)
def test_racing_writers_exactly_one_wins(user):
    """A worker finishing and a cancel arriving at once: one status, never both."""
    message = reply(ConversationFactory(owner=user), MessageStatus.IN_PROGRESS)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(to: str) -> None:
        copy = Message.objects.get(pk=message.pk)
        barrier.wait()
        try:
            message_transition(message=copy, to=to)
            outcomes.append(to)
        except InvalidTransition:
            outcomes.append("lost")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=write, args=(status,))
        for status in (MessageStatus.COMPLETED, MessageStatus.CANCELLED)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("lost") == 1
    winner = next(outcome for outcome in outcomes if outcome != "lost")
    assert Message.objects.get(pk=message.pk).status == winner


@pytest.mark.django_db(transaction=True)
def test_final_stream_event_shows_the_reply_as_the_api_does(auth_client, standin):
    model = StandinModelFactory()
    conversation = auth_client.post(
        "/api/v1/conversations/", {"model": model.slug}, format="json"
    ).json()["id"]
    posted = auth_client.post(
        f"/api/v1/conversations/{conversation}/messages/", {"content": "hi"}, format="json"
    ).json()
    work_until_idle()
    reply_id = posted["assistant_message"]["id"]
    client = redis.Redis.from_url(settings.REDIS_URL)
    entries = client.xrange(f"parley:reply:{reply_id}")
    final = entries[-1][1]
    assert final[b"event"] == b"done"
    from_stream = json.loads(final[b"data"])["message"]
    from_api = auth_client.get(f"/api/v1/conversations/{conversation}/messages/{reply_id}/").json()
    assert from_stream == from_api
