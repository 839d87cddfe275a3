"""OpenAI's SDK against /v1/responses for what agents use: function tools with
function_call / function_call_output items, structured output (text.format), include,
several input turns, and the incomplete status, for a model of each family, streamed and
not (the SDK's own stream accumulator checks the event order)."""

import json

import openai
import pydantic
import pytest

from llm.models import GatewayCall
from tests.compat.conftest import FAMILIES, recorded_calls
from tests.compat.test_responses import with_worker

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


@pytest.mark.parametrize("family", FAMILIES)
def test_function_tool_round_trip_for_each_family(openai_client, family):
    first = openai_client.responses.create(
        model=SLUG[family], input="Weather in Oslo?", tools=TOOLS, tool_choice="required"
    )
    assert first.status == "completed"
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = openai_client.responses.create(
        model=SLUG[family],
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "-3 and snow"},
        ],
        tools=TOOLS,
        include=[],
    )
    assert second.status == "completed"
    assert second.output_text.startswith('The tool returned: "-3 and snow')
    assert [c.endpoint for c in recorded_calls(2)] == ["responses", "responses"]


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_function_call_events_in_the_sdks_order(openai_client, family):
    with openai_client.responses.stream(
        model=SLUG[family], input="Weather in Oslo?", tools=TOOLS, tool_choice="required"
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds.count("response.function_call_arguments.delta") > 1
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = final.output
    assert call.type == "function_call"
    assert isinstance(json.loads(call.arguments)["city"], str)


@pytest.mark.parametrize("family", FAMILIES)
def test_structured_output_with_text_format(openai_client, family):
    parsed = openai_client.responses.parse(
        model=SLUG[family], input="Weather in Oslo?", text_format=Weather
    )
    assert isinstance(parsed.output_parsed, Weather)
    assert parsed.text.format.type == "json_schema"
    with openai_client.responses.stream(
        model=SLUG[family], input="Weather in Oslo?", text_format=Weather
    ) as stream:
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, Weather)


@pytest.mark.parametrize("family", FAMILIES)
def test_several_turns_with_store_on_are_answered(openai_client, family):
    response = openai_client.responses.create(
        model=SLUG[family],
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there"},
            {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]},
        ],
        include=["reasoning.encrypted_content"],
    )
    assert response.status == "completed"
    assert response.output_text.startswith('You said: "And now?"')


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
        ({"tools": TOOLS, "background": True}, "background"),
    ]
    for options, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(**{"model": "gpt-standin", "input": "hi", **options})
        assert caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="claude-standin", input="hi", include=["message.output_text.logprobs"]
        )
    assert caught.value.body["param"] == "include"
    assert GatewayCall.objects.filter(status="refused").exists()
