"""The pure translators, without any server: real request and response bodies of each API
(OpenAI Chat Completions, Anthropic Messages, OpenAI Responses) through the canonical call
model to the other family's wire format and back."""

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.compat import anthropic_messages as messages_api
from llm.compat import openai_chat as chat_api
from llm.compat import responses_events, responses_request
from llm.compat.core import GatewayError, GatewayRequest
from llm.providers import anthropic_messages as anthropic_wire
from llm.providers import openai_chat as openai_wire
from llm.providers.canonical import (
    ChatMessage,
    ChatRequest,
    CompletionResult,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    UnsupportedFeature,
)
from llm.providers.canonical_json import (
    options_dump,
    options_load,
    parts_dump,
    parts_load,
    reply_parts,
    tool_calls_of,
)
from llm.providers.streaming import ReplyAccumulator

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def canonical(request: GatewayRequest, max_tokens: int = 1024) -> ChatRequest:
    """What the gateway builds from a parsed request (see gateway._resolve)."""
    return ChatRequest(
        model="provider-model",
        messages=request.messages,
        max_tokens=request.max_tokens or max_tokens,
        system=request.system,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        **request.options,
    )


def subset(expected, actual) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


# --- Requests: OpenAI Chat Completions to an Anthropic provider ------------------------------

CHAT_TO_ANTHROPIC = [
    pytest.param(
        {
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": WEATHER,
                    },
                }
            ],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
        {
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
        id="tools-and-forced-choice",
    ),
    pytest.param(
        {
            "model": "claude",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "25C"},
            ],
        },
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "call_2",
                            "name": "get_weather",
                            "input": {"city": "Rome"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
                    ],
                },
            ]
        },
        id="parallel-tool-results-in-one-user-turn",
    ),
    pytest.param(
        {
            "model": "claude",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                        },
                    ],
                }
            ],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                }
            ]
        },
        id="image-data-url",
    ),
    pytest.param(
        {
            "model": "claude",
            "messages": [{"role": "user", "content": "Weather?"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": WEATHER, "strict": True},
            },
        },
        {
            "tools": [{"name": "weather", "input_schema": WEATHER}],
            "tool_choice": {"type": "tool", "name": "weather"},
        },
        id="json-schema-as-forced-tool",
    ),
    pytest.param(
        {
            "model": "claude",
            "messages": [{"role": "user", "content": "Hi"}],
            "frequency_penalty": 0,
            "presence_penalty": 0,
            "response_format": {"type": "text"},
            "logit_bias": {},
            "store": False,
            "tools": [],
            "service_tier": "auto",
            "n": 1,
            "stop": ["END"],
            "reasoning_effort": "low",
            "max_completion_tokens": 4000,
        },
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["END"],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "max_tokens": 4000,
        },
        id="neutral-values-and-reasoning-effort",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CHAT_TO_ANTHROPIC)
def test_chat_completions_request_to_anthropic(body, expected):
    request = chat_api.chat_request_parse(body)
    assert not request.passthrough
    sent = anthropic_wire.request_body(canonical(request))
    assert subset(expected, sent), json.dumps(sent, indent=1)
    assert not {"frequency_penalty", "logit_bias", "store", "service_tier", "n"} & sent.keys()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
    ],
)
def test_what_anthropic_cannot_do_names_the_clients_field(extra, param):
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as caught:
        anthropic_wire.request_body(canonical(chat_api.chat_request_parse(body)))
    assert caught.value.param == param


def test_chat_fields_with_no_anthropic_meaning_are_passed_through_and_named():
    request = chat_api.chat_request_parse(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                    ],
                }
            ],
            "logit_bias": {"42": 10},
            "modalities": ["text"],
        }
    )
    assert request.passthrough_param == "messages[0].content"
    assert {"messages", "logit_bias", "modalities"} <= request.passthrough.keys()


# --- Requests: Anthropic Messages to an OpenAI provider --------------------------------------

MESSAGES_TO_OPENAI = [
    pytest.param(
        {
            "model": "gpt",
            "max_tokens": 1024,
            "system": [
                {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        },
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": WEATHER,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 1024,
        },
        id="tools-and-named-choice",
    ),
    pytest.param(
        {
            "model": "gpt",
            "max_tokens": 1024,
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me look."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "18C"}],
                        },
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ],
        },
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "user", "content": "And tomorrow?"},
            ]
        },
        id="tool-use-and-result-turns",
    ),
    pytest.param(
        {
            "model": "gpt",
            "max_tokens": 100,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "text", "text": "What is it?"},
                    ],
                }
            ],
            "stop_sequences": ["\n\nHuman:"],
            "thinking": {"type": "enabled", "budget_tokens": 10000},
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "text", "text": "What is it?"},
                    ],
                }
            ],
            "stop": ["\n\nHuman:"],
            "reasoning_effort": "high",
            "max_completion_tokens": 100,
        },
        id="image-stop-thinking",
    ),
    pytest.param(
        {
            "model": "gpt",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Weather?"}],
            "output_format": {"type": "json_schema", "schema": WEATHER},
        },
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": WEATHER},
            }
        },
        id="output-format",
    ),
]


@pytest.mark.parametrize(("body", "expected"), MESSAGES_TO_OPENAI)
def test_messages_request_to_openai(body, expected):
    request = messages_api.messages_request_parse(body)
    assert not request.passthrough
    sent = openai_wire.request_body(canonical(request))
    assert subset(expected, sent), json.dumps(sent, indent=1)


def test_cache_control_reaches_an_anthropic_provider():
    body = {
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Long.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Doc", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Question"},
                ],
            }
        ],
    }
    sent = anthropic_wire.request_body(canonical(messages_api.messages_request_parse(body)))
    assert sent["system"] == body["system"]
    assert sent["messages"] == body["messages"]


def test_top_k_has_no_openai_translation():
    body = {"model": "gpt", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    request = messages_api.messages_request_parse({**body, "top_k": 5})
    with pytest.raises(UnsupportedFeature) as caught:
        openai_wire.request_body(canonical(request))
    assert caught.value.param == "top_k"


# --- Replies from each provider, whole ------------------------------------------------------


def read_whole(reader, body: dict, request: ChatRequest | None = None) -> CompletionResult:
    request = request or ChatRequest(model="m", messages=[], max_tokens=100)
    reply = ReplyAccumulator(request)
    reader(body, reply)
    return reply.result(request)


OPENAI_TOOL_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2100,
        "completion_tokens": 20,
        "total_tokens": 2120,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
ANTHROPIC_TOOL_REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 180,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1920,
        "output_tokens": 20,
    },
}


def test_provider_replies_read_into_one_canonical_result():
    from_openai = read_whole(openai_wire.read_response, OPENAI_TOOL_REPLY)
    from_anthropic = read_whole(anthropic_wire.read_response, ANTHROPIC_TOOL_REPLY)
    for result in (from_openai, from_anthropic):
        assert result.finish_reason == "tool_calls"
        assert result.input_tokens == 2100 and result.cache_read_tokens == 1920
        (call,) = result.tool_calls
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert from_anthropic.text == "Checking."


def test_anthropic_structured_tool_becomes_the_replys_text():
    request = canonical(
        chat_api.chat_request_parse(
            {
                "model": "claude",
                "messages": [{"role": "user", "content": "Weather?"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": WEATHER},
                },
            }
        )
    )
    body = {
        **ANTHROPIC_TOOL_REPLY,
        "content": [{"type": "tool_use", "id": "toolu_b", "name": "w", "input": {"city": "Oslo"}}],
    }
    result = read_whole(anthropic_wire.read_response, body, request)
    assert (result.text, result.finish_reason, result.tool_calls) == (
        '{"city": "Oslo"}',
        "stop",
        (),
    )


# --- Replies from each provider, streamed ---------------------------------------------------


def read_stream(reader, events: list[dict], request: ChatRequest | None = None) -> list:
    request = request or ChatRequest(model="m", messages=[], max_tokens=100, stop=("END",))
    reply = ReplyAccumulator(request)
    out: list = []
    for event in events:
        text = reader(event, reply)
        if text:
            out.append(text)
        out += reply.take_events()
    return [*out, reply.result(request)]


def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }


def test_openai_stream_tool_fragments_become_incremental_events():
    events = read_stream(
        openai_wire.read_event,
        [
            chunk({"role": "assistant", "content": None}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_x",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Rome"}'}}]}),
            chunk({}, "tool_calls"),
            {
                "id": "chatcmpl-2",
                "choices": [],
                "usage": {"prompt_tokens": 50, "completion_tokens": 9},
            },
        ],
    )
    assert events[:3] == [
        ToolCallStart(0, "call_x", "get_weather"),
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty":"Rome"}'),
    ]
    assert events[3].tool_calls == (ToolCall("call_x", "get_weather", '{"city":"Rome"}'),)


def test_openai_stop_with_one_stop_sequence_reports_it():
    (*_, result) = read_stream(
        openai_wire.read_event, [chunk({"content": "Hello "}), chunk({}, "stop")]
    )
    assert (result.finish_reason, result.stop_sequence) == ("stop", "END")


def test_anthropic_stream_tool_use_becomes_incremental_events():
    def event(kind: str, **data) -> dict:
        return {"type": kind, **data}

    events = read_stream(
        anthropic_wire.read_event,
        [
            event(
                "message_start",
                message={
                    "id": "msg_2",
                    "usage": {"input_tokens": 10, "cache_read_input_tokens": 90},
                },
            ),
            event(
                "content_block_start",
                index=0,
                content_block={
                    "type": "tool_use",
                    "id": "toolu_x",
                    "name": "get_weather",
                    "input": {},
                },
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": '{"city"'},
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": ': "Rome"}'},
            ),
            event("content_block_stop", index=0),
            event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 12}),
            event("message_stop"),
        ],
    )
    assert events[:3] == [
        ToolCallStart(0, "toolu_x", "get_weather"),
        ToolCallDelta(0, '{"city"'),
        ToolCallDelta(0, ': "Rome"}'),
    ]
    result = events[3]
    assert (result.input_tokens, result.cache_read_tokens, result.output_tokens) == (100, 90, 12)
    assert result.finish_reason == "tool_calls"


# --- Rendering for each client --------------------------------------------------------------

RESULT = CompletionResult(
    text="",
    finish_reason="tool_calls",
    input_tokens=2100,
    output_tokens=20,
    response_id="x",
    time_to_first_token_ms=5,
    latency_ms=9,
    tool_calls=(ToolCall("call_a", "get_weather", '{"city":"Paris"}'),),
    cache_read_tokens=1920,
)


def test_replies_render_in_each_clients_shape():
    chat = chat_api.completion_body(RESULT, id="chatcmpl-1", model="claude", created=1)
    assert (
        chat["choices"][0]["message"]["tool_calls"]
        == OPENAI_TOOL_REPLY["choices"][0]["message"]["tool_calls"]
    )
    assert chat["usage"]["prompt_tokens_details"] == {"cached_tokens": 1920}
    message = messages_api.message_body(RESULT, id="msg_1", model="gpt")
    assert message["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 180,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1920,
        "output_tokens": 20,
    }
    parsed = responses_request.responses_request_parse(
        {"model": "m", "input": "hi", "store": False}
    )
    shape = responses_events.unstored_shape(parsed, id="resp_1", model="m")
    body = shape.body("completed", responses_events.ReplyOutput.of(RESULT))
    assert body["output"] == [
        {
            "type": "function_call",
            "id": "fc_1_0",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        }
    ]
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 1920}


async def _relay(items):
    for item in items:
        yield item


def collect(stream) -> list[tuple[str, dict]]:
    async def run():
        return [frame async for frame in stream]

    frames = []
    for frame in asyncio.run(run()):
        for block in frame.strip().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if lines.get("data", "[DONE]") != "[DONE]":
                data = json.loads(lines["data"])
                frames.append((lines.get("event") or data.get("type") or "chunk", data))
    return frames


STREAM = [
    ToolCallStart(0, "call_a", "get_weather"),
    ToolCallDelta(0, '{"city"'),
    ToolCallDelta(0, ':"Paris"}'),
    RESULT,
]


def test_a_streamed_tool_call_in_the_messages_shape_opens_with_the_tool_use_block():
    frames = collect(
        messages_api.event_stream(_relay(STREAM), id="msg_1", model="gpt", input_tokens=5)
    )
    kinds = [kind for kind, _ in frames]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert frames[1][1]["content_block"]["type"] == "tool_use"
    assert frames[5][1]["delta"]["stop_reason"] == "tool_use"


def test_a_streamed_tool_call_in_the_chat_shape_is_incremental():
    frames = collect(
        chat_api.chunk_stream(_relay(STREAM), id="c", model="claude", created=1, include_usage=True)
    )
    deltas = [data["choices"][0]["delta"] for _, data in frames if data["choices"]]
    assert deltas[1]["tool_calls"][0]["id"] == "call_a"
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:4]] == [
        '{"city"',
        ':"Paris"}',
    ]
    assert frames[-1][1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1920


def test_a_streamed_tool_call_in_the_responses_shape_follows_the_sdks_order():
    parsed = responses_request.responses_request_parse(
        {"model": "m", "input": "hi", "store": False}
    )
    writer = responses_events.EventWriter(
        responses_events.unstored_shape(parsed, id="resp_1", model="m")
    )
    frames = collect(responses_events.response_events(writer, _relay(["Let me check. ", *STREAM])))
    assert [kind for kind, _ in frames] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in frames] == list(range(14))
    final = frames[-1][1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]


# --- Responses input items ------------------------------------------------------------------


def test_responses_items_become_canonical_turns():
    parsed = responses_request.responses_request_parse(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Oslo"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "-3C"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER}},
            "include": [],
            "store": True,
        }
    )
    sent = anthropic_wire.request_body(canonical(parsed.call))
    assert sent["system"] == "Be brief."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "-3C"}
    ]
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "w"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"include": ["bogus"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"input": [{"type": "computer_call_output", "call_id": "x"}]}, "input[0].type"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_responses_fields_with_no_translation_are_named(body, param):
    with pytest.raises(GatewayError) as caught:
        responses_request.responses_request_parse({"model": "m", "input": "hi", **body})
    assert caught.value.param == param


def test_tool_turns_sent_to_anthropic_without_tools_declare_them_and_call_none():
    """Anthropic refuses tool_use / tool_result blocks when no tools are defined: a
    conversation continued without its tools (or a client summarising an agent's run) gets
    the tools called earlier declared, and tool_choice none."""
    history = [
        ChatMessage("user", "Weather?"),
        ChatMessage(
            "assistant", parts=(ToolCallPart(id="c1", name="get_weather", arguments="{}"),)
        ),
        ChatMessage("user", parts=(ToolResultPart("c1", content="-3C"),)),
        ChatMessage("user", "Thanks. And tomorrow?"),
    ]
    body = anthropic_wire.request_body(ChatRequest(model="m", messages=history, max_tokens=64))
    assert body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "none"}
    offered = (Tool(name="lookup", parameters=WEATHER),)
    body = anthropic_wire.request_body(
        ChatRequest(model="m", messages=history, max_tokens=64, tools=offered)
    )
    assert [t["name"] for t in body["tools"]] == ["lookup"] and "tool_choice" not in body


# --- What a stored response keeps: the canonical model as JSON -------------------------------


def test_a_stored_turn_and_its_options_come_back_as_they_were_sent():
    """A stored response's input and options survive the database (JSON) unchanged, so the
    worker sends the provider what the client sent."""
    parsed = responses_request.responses_request_parse(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [
                        {"type": "input_text", "text": "-3C"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                },
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER}},
            "reasoning": {"effort": "low"},
        }
    )
    stored = json.loads(json.dumps([parts_dump(m.all_parts) for m in parsed.call.messages]))
    assert [parts_load(parts) for parts in stored] == [m.all_parts for m in parsed.call.messages]
    options = json.loads(json.dumps(options_dump(parsed.call.options)))
    assert options_load(options) == {
        name: parsed.call.options[name]
        for name in ("tools", "tool_choice", "response_format", "reasoning_effort")
    }
    # and a response object echoes them as OpenAI does
    echo = responses_events.echo_fields(options_load(options))
    assert echo["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert echo["tools"][0]["parameters"] == WEATHER
    assert echo["text_format"]["schema"] == WEATHER and echo["text_format"]["name"] == "w"


def test_a_reply_with_tool_calls_keeps_them_as_parts():
    calls = (ToolCall(id="c1", name="f", arguments='{"a": 1}'),)
    assert reply_parts("", ()) == [] and reply_parts("hi", ()) == []
    parts = parts_load(reply_parts("Checking.", calls))
    assert tool_calls_of(parts) == calls
    assert parts[0] == TextPart("Checking.")


# --- Extended thinking: kept and sent back, so a thinking + tools loop works ---------------

THINKING_TURN = {
    "model": "claude",
    "max_tokens": 4096,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "tools": [{"name": "get_weather", "input_schema": WEATHER}],
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should call the tool.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}],
        },
    ],
}


def test_thinking_blocks_go_back_to_anthropic_and_not_to_openai():
    request = messages_api.messages_request_parse(THINKING_TURN)
    assert not request.passthrough
    to_anthropic = anthropic_wire.request_body(canonical(request, 4096))
    assert to_anthropic["messages"][1]["content"] == THINKING_TURN["messages"][1]["content"]
    assert to_anthropic["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    to_openai = openai_wire.request_body(canonical(request, 4096))
    assert to_openai["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }


def test_streamed_thinking_comes_back_to_an_anthropic_client_with_its_signature():
    def event(kind: str, **data) -> dict:
        return {"type": kind, **data}

    provider_events = [
        event("message_start", message={"id": "msg_3", "usage": {"input_tokens": 10}}),
        event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
        event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s1"}),
        event("content_block_stop", index=0),
        event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        event("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi"}),
        event("content_block_stop", index=1),
        event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 5}),
        event("message_stop"),
    ]
    items = read_stream(anthropic_wire.read_event, provider_events)
    result = items[-1]
    assert result.thinking[0].text == "Hmm." and result.thinking[0].signature == "s1"
    frames = collect(
        messages_api.event_stream(_relay(items), id="msg_3", model="claude", input_tokens=10)
    )
    blocks = [
        data["content_block"]["type"] for kind, data in frames if kind == "content_block_start"
    ]
    assert blocks == ["thinking", "text"]
    deltas = [data["delta"] for kind, data in frames if kind == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "Hmm."},
        {"type": "signature_delta", "signature": "s1"},
        {"type": "text_delta", "text": "Hi"},
    ]
    body = messages_api.message_body(result, id="msg_3", model="claude")
    assert body["content"] == [
        {"type": "thinking", "thinking": "Hmm.", "signature": "s1"},
        {"type": "text", "text": "Hi"},
    ]
    chat = collect(
        chat_api.chunk_stream(_relay(items), id="c", model="m", created=1, include_usage=False)
    )
    assert "".join(d["choices"][0]["delta"].get("content") or "" for _, d in chat) == "Hi"


def test_cache_control_from_an_openai_client_reaches_anthropic_only():
    body = {
        "model": "claude",
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Doc", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Question"},
                ],
            },
        ],
    }
    request = canonical(chat_api.chat_request_parse(body))
    to_anthropic = anthropic_wire.request_body(request)
    assert to_anthropic["system"] == [
        {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
    ]
    assert to_anthropic["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    to_openai = openai_wire.request_body(request)
    assert "cache_control" not in json.dumps(to_openai)


@pytest.mark.parametrize(
    ("parse", "body", "param"),
    [
        (
            chat_api.chat_request_parse,
            {"tool_choice": {"type": "function", "function": "x"}},
            "tool_choice",
        ),
        (
            chat_api.chat_request_parse,
            {"tools": [{"type": "function", "function": "x"}]},
            "tools[0].function",
        ),
        (
            chat_api.chat_request_parse,
            {"response_format": {"type": "json_schema", "json_schema": []}},
            "response_format",
        ),
        (
            chat_api.chat_request_parse,
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url",
        ),
        (messages_api.messages_request_parse, {"tool_choice": "any"}, "tool_choice"),
        (messages_api.messages_request_parse, {"thinking": {"type": "enabled"}}, "thinking"),
        (
            messages_api.messages_request_parse,
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "name": "x", "input": []}]}
                ]
            },
            "messages.0.content.0",
        ),
        (responses_request.responses_request_parse, {"include": [{"a": 1}]}, "include"),
        (
            responses_request.responses_request_parse,
            {"input": [{"type": "function_call", "name": "x"}]},
            "input[0]",
        ),
    ],
)
def test_malformed_fields_are_400s_naming_them_never_500s(parse, body, param):
    base = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    if parse is responses_request.responses_request_parse:
        base = {"model": "m", "input": "hi"}
    with pytest.raises(GatewayError) as caught:
        parse({**base, **body})
    assert (caught.value.status, caught.value.param) == (400, param)


# --- Any JSON in any field: a translation or a 400, never an exception (a 500) ---------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
CHAT_FIELDS = [
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "n",
    "logprobs",
    "stop",
    "seed",
    "parallel_tool_calls",
]
MESSAGES_FIELDS = [
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_format",
    "output_config",
    "top_k",
]
RESPONSES_FIELDS = ["input", "tools", "tool_choice", "text", "include", "reasoning", "truncation"]
PART_TYPES = st.sampled_from(
    [
        "text",
        "image_url",
        "image",
        "tool_use",
        "tool_result",
        "input_text",
        "input_image",
        "function_call",
        "function_call_output",
        "message",
        "thinking",
        "function",
    ]
)
# Fields shaped like the real ones, with any values inside: deeper than plain random JSON.
SHAPED = st.fixed_dictionaries(
    {"type": PART_TYPES},
    optional={
        k: JSON
        for k in (
            "text",
            "image_url",
            "source",
            "input",
            "content",
            "name",
            "id",
            "call_id",
            "arguments",
            "output",
            "role",
            "function",
            "tool_use_id",
        )
    },
)


MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
        "content": JSON | st.lists(SHAPED, max_size=3),
    },
    optional={"tool_calls": st.lists(JSON | SHAPED, max_size=2), "tool_call_id": JSON},
)
VALUES = JSON | SHAPED | st.lists(SHAPED, max_size=3) | st.lists(MESSAGE, min_size=1, max_size=3)


def translations_or_400s(parse, base: dict, fields: list[str]):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(fields), value=VALUES)
    def check(field, value):
        try:
            parsed = parse({**base, field: value})
        except GatewayError as error:
            assert error.status == 400
            return
        request = getattr(parsed, "call", parsed)
        for wire in (openai_wire, anthropic_wire):
            try:
                wire.request_body(canonical(request))
            except UnsupportedFeature:
                pass

    check()


def test_any_chat_completions_field_is_translated_or_refused():
    translations_or_400s(
        chat_api.chat_request_parse,
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        CHAT_FIELDS,
    )


def test_any_messages_field_is_translated_or_refused():
    base = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    translations_or_400s(messages_api.messages_request_parse, base, MESSAGES_FIELDS)


def test_any_responses_field_is_translated_or_refused():
    translations_or_400s(
        responses_request.responses_request_parse, {"model": "m", "input": "hi"}, RESPONSES_FIELDS
    )
