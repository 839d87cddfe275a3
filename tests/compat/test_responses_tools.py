"""OpenAI's SDK against /v1/responses for what agents use: function tools with
function_call / function_call_output items, structured output (text.format), include,
several input turns, and the incomplete status, for a model of each family, streamed and
not (the SDK's own stream accumulator checks the event order)."""

import functools
import json

import openai
import pydantic
import pytest

from llm.models import Conversation, GatewayCall, Message
from tests.compat.conftest import FAMILIES, recorded_calls
from tests.live import with_worker, work_until_idle

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = {"openai": "gpt-standin", "anthropic": "claude-standin"}
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


class Weather(pydantic.BaseModel):
    city: str
    temperature: int


RED_DOT = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/"
    "iZk9HQAAAABJRU5ErkJggg=="
)


def stored_turns() -> list[tuple[str, str, list[str]]]:
    """The one stored conversation's messages: role, text and the types of their parts."""
    (conversation,) = Conversation.objects.all()
    return [
        (m.role, m.content, [p["type"] for p in m.parts])
        for m in conversation.messages.order_by("position")
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_stored_function_tool_loop_with_previous_response_id(openai_client, family):
    """The agent loop the OpenAI Agents SDK runs with ``previous_response_id``: a stored
    response calls the tool, the next sends only the tool's output."""
    first = with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family], input="Weather in Oslo?", tools=TOOLS, tool_choice="required"
        )
    )
    assert first.status == "completed" and first.store is True
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert first.tools[0].name == "get_weather" and first.tool_choice == "required"
    retrieved = openai_client.responses.retrieve(first.id)
    assert [(i.type, i.call_id) for i in retrieved.output] == [("function_call", call.call_id)]

    second = with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family],
            previous_response_id=first.id,
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": "-3 and snow"}
            ],
            tools=TOOLS,
            include=[],
        )
    )
    assert second.status == "completed" and second.previous_response_id == first.id
    assert second.output_text.startswith('The tool returned: "-3 and snow')
    assert stored_turns() == [
        ("user", "Weather in Oslo?", []),
        ("assistant", first.output_text, ["tool_call"]),
        ("user", "", ["tool_result"]),
        ("assistant", second.output_text, []),
    ]
    assert [c.endpoint for c in recorded_calls(2)] == ["responses", "responses"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_whole_exchange_sent_at_once_is_stored_turn_by_turn(openai_client, family):
    """What a stateless client (or the Agents SDK without previous_response_id) sends: the
    whole exchange each time, with store on."""
    response = with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family],
            input=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city": "Oslo"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "-3 and snow"},
            ],
            tools=TOOLS,
        )
    )
    assert response.status == "completed" and response.instructions == "Be brief."
    assert response.output_text.startswith('The tool returned: "-3 and snow')
    assert stored_turns() == [
        ("user", "Weather in Oslo?", []),
        ("assistant", "", ["tool_call"]),
        ("user", "", ["tool_result"]),
        ("assistant", response.output_text, []),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_function_call_events_in_the_sdks_order(openai_client, family):
    def stream(store: bool):
        with openai_client.responses.stream(
            model=SLUG[family],
            input="Weather in Oslo?",
            tools=TOOLS,
            tool_choice="required",
            store=store,
        ) as events:
            return [event.type for event in events], events.get_final_response()

    for store in (False, True):
        kinds, final = with_worker(functools.partial(stream, store))
        assert kinds[:3] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]
        assert "response.function_call_arguments.delta" in kinds
        assert kinds[-3:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        (call,) = final.output
        assert call.type == "function_call"
        assert isinstance(json.loads(call.arguments)["city"], str)
        if not store:  # relayed as the provider sends them, fragment by fragment
            assert kinds.count("response.function_call_arguments.delta") > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_structured_output_with_text_format(openai_client, family):
    parsed = with_worker(
        lambda: openai_client.responses.parse(
            model=SLUG[family], input="Weather in Oslo?", text_format=Weather
        )
    )
    assert isinstance(parsed.output_parsed, Weather)
    assert parsed.text.format.type == "json_schema"
    assert openai_client.responses.retrieve(parsed.id).text.format.name == "Weather"

    def streamed():
        with openai_client.responses.stream(
            model=SLUG[family], input="Weather in Oslo?", text_format=Weather
        ) as stream:
            return stream.get_final_response()

    assert isinstance(with_worker(streamed).output_parsed, Weather)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_background_response_with_tools_and_structured_output(openai_client, family):
    queued = openai_client.responses.create(
        model=SLUG[family],
        input="Weather in Oslo?",
        tools=TOOLS,
        tool_choice="required",
        background=True,
    )
    assert queued.status == "queued" and queued.tools[0].name == "get_weather"

    def wait(response_id: str):
        response = openai_client.responses.retrieve(response_id)
        while response.status in ("queued", "in_progress"):
            response = openai_client.responses.retrieve(response_id)
        return response

    called = with_worker(lambda: wait(queued.id))
    (call,) = called.output
    assert called.status == "completed" and call.type == "function_call"
    answered = openai_client.responses.create(
        model=SLUG[family],
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3"}],
        text={
            "format": {
                "type": "json_schema",
                "name": "Weather",
                "strict": True,
                "schema": Weather.model_json_schema() | {"additionalProperties": False},
            }
        },
        background=True,
    )
    final = with_worker(lambda: wait(answered.id))
    assert final.status == "completed"
    assert Weather.model_validate_json(final.output_text)


@pytest.mark.parametrize("family", FAMILIES)
def test_several_turns_and_an_image_with_store_on(openai_client, auth_client, family):
    response = with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family],
            input=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi there"},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "And now?"},
                        {"type": "input_image", "image_url": RED_DOT},
                    ],
                },
            ],
            include=["reasoning.encrypted_content"],
        )
    )
    assert response.status == "completed"
    assert response.output_text.startswith('You said: "And now?"')
    assert stored_turns() == [
        ("user", "Hello", []),
        ("assistant", "Hi there", []),
        ("user", "And now?", ["text", "image"]),
        ("assistant", response.output_text, []),
    ]
    # The conversations API shows the stored parts too.
    (conversation,) = auth_client.get("/api/v1/conversations/").json()["results"]
    messages = auth_client.get(f"/api/v1/conversations/{conversation['id']}/messages/").json()
    (image,) = [p for p in messages["results"][2]["parts"] if p["type"] == "image"]
    assert image["media_type"] == "image/png"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_reply_cut_by_max_output_tokens_is_incomplete(openai_client, family):
    response = openai_client.responses.create(
        model=SLUG[family], input="Tell me a story", max_output_tokens=16, store=False
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    with openai_client.responses.stream(
        model=SLUG[family], input="Tell me a story", max_output_tokens=16, store=False
    ) as stream:
        events = list(stream)
    # As from OpenAI: the stream ends with response.incomplete (the SDK's
    # get_final_response() waits for response.completed only).
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].response.output[0].status == "incomplete"


def test_a_background_reply_cut_by_max_output_tokens_is_incomplete(openai_client):
    queued = openai_client.responses.create(
        model="gpt-standin", input="Tell me a story", max_output_tokens=16, background=True
    )
    assert queued.status == "queued"

    def wait():
        response = openai_client.responses.retrieve(queued.id)
        while response.status in ("queued", "in_progress"):
            response = openai_client.responses.retrieve(queued.id)
        return response

    response = with_worker(wait)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


def test_what_has_no_translation_is_a_400_naming_it(openai_client):
    cases = [
        ({"include": ["no.such.thing"]}, "include"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["x"]}]}, "tools"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "assistant", "content": "prefill"}]}, "input"),
    ]
    for options, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(**{"model": "gpt-standin", "input": "hi", **options})
        assert caught.value.body["param"] == param
    for store in (True, False):  # kept only unstored; Anthropic models have none
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(
                model="claude-standin",
                input="hi",
                include=["message.output_text.logprobs"],
                store=store,
            )
        assert caught.value.body["param"] == "include"
    assert GatewayCall.objects.filter(status="refused").exists()
    assert not Conversation.objects.exists()  # a refusal stores nothing


def test_regenerating_a_stored_tool_call_keeps_its_tools(openai_client, auth_client):
    """The conversations API's regenerate writes the reply again with what it was asked with
    (tools, tool choice), not as a plain text reply."""
    first = with_worker(
        lambda: openai_client.responses.create(
            model="claude-standin", input="Weather in Oslo?", tools=TOOLS, tool_choice="required"
        )
    )
    reply = Message.objects.get(pk=first.id.removeprefix("resp_"))
    url = f"/api/v1/conversations/{reply.conversation_id}/messages/{reply.pk}/regenerate/"
    regenerated = auth_client.post(url, {}, format="json")
    assert regenerated.status_code == 202, regenerated.content
    work_until_idle()
    again = Message.objects.get(pk=regenerated.json()["assistant_message"]["id"])
    assert again.status == "completed" and again.pk != reply.pk
    assert [p["type"] for p in again.parts] == ["tool_call"]
    assert again.call_options == reply.call_options


def test_input_items_of_a_stored_response(openai_client, parley, other_user):
    """``client.responses.input_items.list``: what each call of a chain sent, as items."""
    first = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin",
            input=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Weather here?"},
                        {"type": "input_image", "image_url": RED_DOT},
                    ],
                },
            ],
            tools=TOOLS,
            tool_choice="required",
        )
    )
    (call,) = first.output
    second = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3"}],
        )
    )
    (message,) = openai_client.responses.input_items.list(first.id).data
    assert message.type == "message" and message.role == "user"
    assert [c.type for c in message.content] == ["input_text", "input_image"]
    assert message.content[1].image_url == RED_DOT
    (output,) = openai_client.responses.input_items.list(second.id).data
    assert (output.type, output.call_id, output.output) == (
        "function_call_output",
        call.call_id,
        "-3",
    )

    # pages, oldest first on request
    many = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin",
            input=[{"role": "user", "content": f"turn {n}"} for n in range(5)],
        )
    )
    page = openai_client.responses.input_items.list(many.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["turn 0", "turn 1"] and page.has_more
    texts = [i.content[0].text for i in openai_client.responses.input_items.list(many.id)]
    assert texts == [f"turn {n}" for n in reversed(range(5))]
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.input_items.list(many.id, limit=0)

    from accounts.services import api_key_create

    other_key = api_key_create(owner=other_user, name="other").secret
    with openai.OpenAI(base_url=f"{parley}/v1", api_key=other_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(first.id)


def test_a_stored_response_asking_more_than_the_models_ceiling_gets_the_ceiling(
    openai_client, catalog
):
    """As on every /v1/ path: clients that know no limit for a model name send their own."""
    ceiling = catalog["openai"].max_output_tokens
    response = with_worker(
        lambda: openai_client.responses.create(
            model="gpt-standin", input="hi", max_output_tokens=ceiling * 10
        )
    )
    assert response.status == "completed"
    reply = Message.objects.get(pk=response.id.removeprefix("resp_"))
    assert reply.job.payload["params"]["max_tokens"] == ceiling


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tool_conversation_continues_in_the_conversations_api(openai_client, auth_client, family):
    """A person continues an agent's stored conversation in the chat API, which offers no
    tools: the reply is written (Anthropic refuses tool turns without tools defined, so the
    tools called earlier are declared with tool_choice none)."""
    first = with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family], input="Weather in Oslo?", tools=TOOLS, tool_choice="required"
        )
    )
    (call,) = first.output
    with_worker(
        lambda: openai_client.responses.create(
            model=SLUG[family],
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3"}],
        )
    )
    (conversation,) = Conversation.objects.all()
    posted = auth_client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/", {"content": "Thanks!"}, format="json"
    )
    assert posted.status_code == 202, posted.content
    work_until_idle()
    reply = Message.objects.get(pk=posted.json()["assistant_message"]["id"])
    assert reply.status == "completed", reply.error
    assert reply.content.startswith('You said: "Thanks!"')
