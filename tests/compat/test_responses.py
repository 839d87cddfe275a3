"""OpenAI's SDK against /v1/responses: not stored (one gateway call), stored (a Parley
conversation reply written by a real RQ worker), previous_response_id chains, background
responses followed with a stream that resumes after a disconnect, cancel and delete."""

import openai
import pytest

from llm.models import Conversation, Message
from tests.compat.conftest import recorded_call
from tests.live import with_worker
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_unstored_response_plain_and_streamed(openai_client):
    response = openai_client.responses.create(
        model="gpt-standin", input="Tell me about Parley", store=False, instructions="Be brief."
    )
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text.startswith('You said: "Tell me about Parley". (Following')
    assert response.usage.output_tokens == 24
    call = recorded_call()
    assert (call.endpoint, call.status, call.output_tokens) == ("responses", "completed", 24)
    assert not Conversation.objects.exists()  # nothing stored but the record

    events = list(
        openai_client.responses.create(
            model="claude-standin", input="Tell me about Parley", store=False, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 24
    assert "".join(deltas) == events[-1].response.output_text
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_stored_responses_chain_into_one_conversation(openai_client, auth_client):
    first = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin", input="first question", instructions="Be brief."
        )
    )
    assert first.status == "completed"
    assert first.output_text.startswith('You said: "first question"')
    second = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin", input="second question", previous_response_id=first.id
        )
    )
    assert second.previous_response_id == first.id
    assert second.output_text.startswith('You said: "second question"')
    assert openai_client.responses.retrieve(second.id).output_text == second.output_text

    (conversation,) = auth_client.get("/api/v1/conversations/").json()["results"]
    assert conversation["system_prompt"] == "Be brief."
    messages = auth_client.get(f"/api/v1/conversations/{conversation['id']}/messages/").json()
    contents = [m["content"] for m in messages["results"]]
    assert contents == ["first question", first.output_text, "second question", second.output_text]


def test_background_response_streams_and_resumes_after_a_disconnect(openai_client):
    StandinModelFactory(slug="gpt-slow", provider="openai", provider_model="standin-tps40-len40")
    queued = openai_client.responses.create(model="gpt-slow", input="stream it", background=True)
    assert queued.status == "queued" and queued.background is True

    first_part = []

    def follow_with_a_disconnect():
        with openai_client.responses.retrieve(queued.id, stream=True) as stream:
            for event in stream:
                first_part.append(event)
                if event.type == "response.output_text.delta" and len(first_part) > 10:
                    break  # the client goes away mid-reply
        return list(
            openai_client.responses.retrieve(
                queued.id, stream=True, starting_after=first_part[-1].sequence_number
            )
        )

    resumed = with_worker(follow_with_a_disconnect)
    events = first_part + resumed
    assert [e.sequence_number for e in events] == list(range(len(events)))  # none missed/repeated
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = openai_client.responses.retrieve(queued.id)
    assert final.status == "completed" and text == final.output_text
    assert events[-1].type == "response.completed"
    assert Message.objects.get(role="assistant").content == text


def test_background_response_can_be_cancelled(openai_client):
    StandinModelFactory(slug="gpt-long", provider="openai", provider_model="standin-tps20-len400")
    queued = openai_client.responses.create(model="gpt-long", input="long one", background=True)
    cancelled = openai_client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.cancel(queued.id)
    assert openai_client.responses.retrieve(queued.id).status == "cancelled"


def test_delete_and_other_users_responses(openai_client, parley, other_user):
    from accounts.services import api_key_create

    response = with_worker(
        lambda: openai_client.responses.create(model="gpt-standin", input="to be deleted")
    )
    other_key = api_key_create(owner=other_user, name="other").secret
    with openai.OpenAI(base_url=f"{parley}/v1", api_key=other_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(response.id)
    openai_client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)
    assert not Conversation.objects.exists()


def test_what_is_not_supported_is_a_400_naming_it(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="gpt-standin", input="hi", tools=[{"type": "web_search"}]
        )
    assert caught.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="gpt-standin", input="hi", store=False, background=True
        )
    assert caught.value.body["param"] == "store"
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="gpt-nope", input="hi")
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve("resp_" + "0" * 32)


def test_stored_responses_pass_the_same_gate(openai_client, api_key, catalog):
    from llm.models import ModelAccess

    access = ModelAccess.objects.create(api_key=api_key.api_key)
    access.allowed_models.set([catalog["anthropic"]])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client.responses.create(model="gpt-standin", input="hi", background=True)
    assert caught.value.body["code"] == "model_not_allowed"
    assert not Conversation.objects.exists()  # a refusal stores nothing
