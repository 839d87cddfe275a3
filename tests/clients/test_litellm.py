"""The litellm SDK as a client (``litellm.completion``), as teams call through it: its
``openai/`` provider at Parley's ``/v1`` and its ``anthropic/`` provider at Parley's root,
each against a model of each family — a tool round trip, a streamed tool call put together
by ``stream_chunk_builder``, and a streamed reply with its usage."""

import json

import jsonschema
import pytest

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]


@pytest.fixture
def completion(parley, api_key, model, client_family, monkeypatch):
    """``litellm.completion`` for ``model`` through litellm's provider ``client_family``, with
    only the base URL and key given (no max_tokens: litellm sends its own for anthropic/)."""
    # The cost map litellm ships with, not the one it would download at import.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    base = f"{parley}/v1" if client_family == "openai" else parley

    def call(**kwargs):
        return litellm.completion(
            model=f"{client_family}/{model}", api_base=base, api_key=api_key.secret, **kwargs
        )

    return call


def test_litellm_tool_round_trip(completion):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = completion(messages=messages, tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    answer = completion(messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content.startswith('The tool returned: "18 degrees"')


def test_litellm_streamed_tool_call(completion):
    import litellm

    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    chunks = list(completion(messages=messages, tools=TOOLS, stream=True))
    assert len(chunks) > 2
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    assert built.choices[0].finish_reason == "tool_calls"
    (call,) = built.choices[0].message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_litellm_streamed_reply_with_usage(completion):
    messages = [{"role": "user", "content": "Tell me about Parley"}]
    chunks = list(
        completion(messages=messages, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.startswith('You said: "Tell me about Parley".')
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
