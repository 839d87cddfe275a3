"""The official openai and anthropic SDKs: a tool-calling turn and its answer, and structured
output, against a model of each family."""

import json

import anthropic
import jsonschema
import openai
from pydantic import BaseModel

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}


class City(BaseModel):
    name: str
    population: int
    landmarks: list[str]


def test_openai_sdk_tool_round_trip(parley, api_key, model):
    client = openai.OpenAI(base_url=f"{parley}/v1", api_key=api_key.secret, max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    answer = client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert answer.choices[0].message.content.startswith('The tool returned: "18 degrees"')


def test_openai_sdk_structured_output(parley, api_key, model):
    client = openai.OpenAI(base_url=f"{parley}/v1", api_key=api_key.secret, max_retries=0)
    parsed = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Describe Lyon"}],
        response_format=City,
    )
    assert isinstance(parsed.choices[0].message.parsed, City)


def test_anthropic_sdk_tool_round_trip(parley, api_key, model):
    client = anthropic.Anthropic(base_url=parley, api_key=api_key.secret, max_retries=0)
    tools = [{"name": "get_weather", "input_schema": WEATHER}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=1024, messages=messages, tools=tools)
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    jsonschema.validate(use.input, WEATHER)
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}],
        },
    ]
    answer = client.messages.create(model=model, max_tokens=1024, messages=messages, tools=tools)
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text.startswith('The tool returned: "18 degrees"')
