"""Tools, structured output, images, logprobs, n and prompt caching through the official
``openai`` and ``anthropic`` SDKs against a live Parley, for a model of each family, streamed
and not: what agent frameworks and structured-output libraries need, across families."""

import base64
import json

import anthropic
import pydantic
import pytest

from tests.compat.conftest import FAMILIES, recorded_calls

pytestmark = pytest.mark.django_db(transaction=True)
SLUG = {"openai": "gpt-standin", "anthropic": "claude-standin"}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "The weather in a city.", "input_schema": WEATHER_SCHEMA}
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
    )
).decode()


class Weather(pydantic.BaseModel):
    city: str
    temperature: int
    conditions: list[str]


def valid_weather_arguments(arguments: dict) -> None:
    assert set(arguments) <= {"city", "unit", "days"}
    assert isinstance(arguments["city"], str)
    assert arguments["unit"] in ("celsius", "fahrenheit")


# --- OpenAI Chat Completions --------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_openai_sdk_tool_loop_for_each_family(openai_client, standin, family):
    completion = openai_client.chat.completions.create(
        model=SLUG[family], messages=QUESTION, tools=CHAT_TOOLS, tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    valid_weather_arguments(json.loads(call.function.arguments))
    if family == "anthropic":  # the provider got Anthropic's own shapes
        sent = standin.last_request.body
        assert sent["tools"][0]["input_schema"] == WEATHER_SCHEMA
        assert sent["tool_choice"] == {"type": "any"}
    answer = openai_client.chat.completions.create(
        model=SLUG[family],
        messages=[
            *QUESTION,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
        ],
        tools=CHAT_TOOLS,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.startswith('The tool returned: "18 degrees')
    if family == "anthropic":
        result = standin.last_request.body["messages"][-1]["content"][0]
        assert result == {
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": "18 degrees and sunny",
        }


@pytest.mark.parametrize("family", FAMILIES)
def test_openai_sdk_streams_tool_calls_incrementally(openai_client, family):
    chunks = list(
        openai_client.chat.completions.create(
            model=SLUG[family],
            messages=QUESTION,
            tools=CHAT_TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    fragments = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert fragments[0].id and fragments[0].function.name == "get_weather"
    argument_pieces = [f.function.arguments for f in fragments[1:] if f.function.arguments]
    assert len(argument_pieces) > 1  # arguments arrive as they are generated, not at the end
    valid_weather_arguments(json.loads("".join(argument_pieces)))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # and the SDK's own accumulator agrees
    with openai_client.chat.completions.stream(
        model=SLUG[family], messages=QUESTION, tools=CHAT_TOOLS, tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    valid_weather_arguments(json.loads(call.function.arguments))


@pytest.mark.parametrize("family", FAMILIES)
def test_openai_sdk_structured_output_for_each_family(openai_client, standin, family):
    parsed = openai_client.chat.completions.parse(
        model=SLUG[family], messages=QUESTION, response_format=Weather
    )
    weather = parsed.choices[0].message.parsed
    assert isinstance(weather, Weather) and weather.city
    assert parsed.choices[0].finish_reason == "stop"
    if family == "anthropic":  # a forced tool whose input schema is the requested one
        sent = standin.last_request.body
        assert sent["tool_choice"] == {"type": "tool", "name": "Weather"}
        assert sent["tools"][0]["input_schema"]["required"] == ["city", "temperature", "conditions"]
    with openai_client.chat.completions.stream(
        model=SLUG[family], messages=QUESTION, response_format=Weather
    ) as stream:
        texts = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(texts) > 1
    assert isinstance(final.choices[0].message.parsed, Weather)
    json_mode = openai_client.chat.completions.create(
        model=SLUG[family], messages=QUESTION, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(json_mode.choices[0].message.content), dict)


def test_openai_sdk_image_for_an_anthropic_model(openai_client, standin):
    completion = openai_client.chat.completions.create(
        model="claude-standin",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert "I see 1 image" in completion.choices[0].message.content
    (turn,) = standin.last_request.body["messages"]
    assert turn["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }


def test_n_and_logprobs_pass_through_for_an_openai_model(openai_client, standin):
    completion = openai_client.chat.completions.create(
        model="gpt-standin", messages=QUESTION, n=2, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content for c in completion.choices)
    assert completion.choices[0].logprobs.content[0].token
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-standin", messages=QUESTION, logprobs=True, stream=True
        )
    )
    streamed = [
        t
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    assert streamed and streamed[0].token


# --- Anthropic Messages ---------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_anthropic_sdk_tool_use_for_each_family(anthropic_client, standin, family):
    message = anthropic_client.messages.create(
        model=SLUG[family],
        max_tokens=200,
        messages=QUESTION,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather"
    valid_weather_arguments(block.input)
    if family == "openai":
        sent = standin.last_request.body
        assert sent["tool_choice"] == "required"
        assert sent["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
    answer = anthropic_client.messages.create(
        model=SLUG[family],
        max_tokens=200,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *QUESTION,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block.id, "content": "18 and sunny"}
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text.startswith('The tool returned: "18 and sunny')
    if family == "openai":
        assert standin.last_request.body["messages"][-1] == {
            "role": "tool",
            "tool_call_id": block.id,
            "content": "18 and sunny",
        }


@pytest.mark.parametrize("family", FAMILIES)
def test_anthropic_sdk_streams_tool_use_without_an_empty_text_block(anthropic_client, family):
    with anthropic_client.messages.stream(
        model=SLUG[family],
        max_tokens=200,
        messages=QUESTION,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["tool_use"]
    json_deltas = [
        e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(json_deltas) > 1
    assert message.stop_reason == "tool_use"
    valid_weather_arguments(message.content[0].input)


@pytest.mark.parametrize("family", FAMILIES)
def test_anthropic_sdk_structured_output_for_each_family(anthropic_client, family):
    schema = Weather.model_json_schema()
    message = anthropic_client.messages.create(
        model=SLUG[family],
        max_tokens=300,
        messages=QUESTION,
        extra_body={"output_format": {"type": "json_schema", "schema": schema}},
    )
    assert message.stop_reason == "end_turn"
    Weather.model_validate_json(message.content[0].text)
    with anthropic_client.messages.stream(
        model=SLUG[family],
        max_tokens=300,
        messages=QUESTION,
        extra_body={"output_format": {"type": "json_schema", "schema": schema}},
    ) as stream:
        text = stream.get_final_text()
    Weather.model_validate_json(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_anthropic_sdk_parse_with_output_config_for_each_family(anthropic_client, family):
    parsed = anthropic_client.messages.parse(
        model=SLUG[family], max_tokens=300, messages=QUESTION, output_format=Weather
    )
    assert isinstance(parsed.parsed_output, Weather)
    assert parsed.stop_reason == "end_turn"


def test_anthropic_output_config_effort_is_an_anthropic_control(anthropic_client, standin):
    anthropic_client.messages.create(
        model="claude-standin",
        max_tokens=50,
        messages=QUESTION,
        output_config={"effort": "low"},
    )
    assert standin.last_request.body["output_config"] == {"effort": "low"}
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(
            model="gpt-standin", max_tokens=50, messages=QUESTION, output_config={"effort": "low"}
        )
    assert "output_config.effort" in caught.value.body["error"]["message"]


def test_anthropic_sdk_stop_sequence_for_an_openai_model(anthropic_client):
    message = anthropic_client.messages.create(
        model="gpt-standin", messages=QUESTION, max_tokens=100, stop_sequences=["Paris"]
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "Paris"


def test_anthropic_sdk_image_for_an_openai_model(anthropic_client, standin):
    message = anthropic_client.messages.create(
        model="gpt-standin",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert "I see 1 image" in message.content[0].text
    (turn,) = standin.last_request.body["messages"]
    assert turn["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }


def test_cache_control_reaches_anthropic_and_cached_tokens_come_back(anthropic_client, standin):
    system = [
        {
            "type": "text",
            "text": "You are a weather bot. " * 200,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    first = anthropic_client.messages.create(
        model="claude-standin", max_tokens=50, system=system, messages=QUESTION
    )
    assert standin.last_request.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    second = anthropic_client.messages.create(
        model="claude-standin", max_tokens=50, system=system, messages=QUESTION
    )
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    # every prompt token is counted, the cached ones included
    assert recorded_calls(2)[1].input_tokens == (
        second.usage.input_tokens + second.usage.cache_read_input_tokens
    )


def test_openai_sdk_reports_cached_prompt_tokens_of_an_openai_model(openai_client):
    messages = [{"role": "system", "content": "You are a weather bot. " * 200}, *QUESTION]
    openai_client.chat.completions.create(model="gpt-standin", messages=messages)
    second = openai_client.chat.completions.create(model="gpt-standin", messages=messages)
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert second.usage.prompt_tokens > second.usage.prompt_tokens_details.cached_tokens
    assert recorded_calls(2)[1].input_tokens == second.usage.prompt_tokens
