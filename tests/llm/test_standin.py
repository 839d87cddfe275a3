"""The stand-in provider plays a real model's part for agents and structured-output clients:
the real OpenAI and Anthropic SDKs against it over HTTP, and every generated tool argument or
JSON reply checked with the ``jsonschema`` library against the schema that was given."""

import base64
import json
import struct

import anthropic
import jsonschema
import openai
import pytest

from llm.standin.schema import instance

SCHEMAS = [
    {"type": "object", "properties": {}},
    {"type": "string"},
    {"type": "string", "minLength": 80},
    {"type": "string", "maxLength": 3},
    {"type": "string", "format": "date-time"},
    {"type": "integer"},
    {"type": "integer", "minimum": 10, "maximum": 12},
    {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
    {"type": "integer", "minimum": 1, "multipleOf": 5},
    {"type": "integer", "maximum": -40},
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.1},
    {"type": "number", "minimum": 1000},
    {"type": "number", "multipleOf": 0.5, "minimum": 2},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["red", "green", "blue"]},
    {"type": "string", "enum": ["celsius", "fahrenheit"]},
    {"const": 42},
    {"type": ["string", "null"]},
    {"type": "array", "items": {"type": "integer"}},
    {"type": "array", "items": {"type": "string"}, "minItems": 5, "maxItems": 6},
    {"type": "array", "items": {"type": "number"}, "maxItems": 1},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"type": "integer"}, "minItems": 4, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2},
    {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["location", "unit"],
        "additionalProperties": False,
    },
    {  # nested objects and arrays of objects
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "lines": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string", "minLength": 4},
                                "quantity": {"type": "integer", "minimum": 1},
                                "price": {"type": "number", "exclusiveMinimum": 0},
                            },
                            "required": ["sku", "quantity", "price"],
                        },
                    },
                },
                "required": ["id", "lines"],
            },
            "notes": {"type": ["string", "null"]},
        },
        "required": ["order"],
    },
    {  # what pydantic emits: $defs, $ref, Optional as anyOf with null, allOf wrappers
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["street", "zip"],
                "title": "Address",
            },
            "Role": {"enum": ["admin", "member"], "type": "string", "title": "Role"},
        },
        "type": "object",
        "properties": {
            "name": {"type": "string", "title": "Name"},
            "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
            "address": {"$ref": "#/$defs/Address"},
            "role": {"allOf": [{"$ref": "#/$defs/Role"}], "default": "member"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "address", "role"],
    },
    {  # a recursive model: a tree of nodes
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["label"],
            }
        },
        "$ref": "#/$defs/Node",
    },
    {"oneOf": [{"type": "integer", "minimum": 100}, {"type": "string", "maxLength": 1}]},
    {"type": "object", "minProperties": 2, "additionalProperties": {"type": "boolean"}},
    {"type": "object", "additionalProperties": {"type": "integer"}, "properties": {}},
    {"properties": {"a": {"items": {"type": "integer"}}}, "required": ["a"]},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_generated_instances_validate_against_their_schema(schema):
    value = instance(schema, "what is the weather in Paris")
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
    assert instance(schema, "what is the weather in Paris") == value  # deterministic


def test_the_users_words_fill_the_first_free_text_argument():
    schema = SCHEMAS[26]
    assert instance(schema, "Paris, France") == {
        "location": "Paris, France",
        "unit": "celsius",
        "days": 4,
    }


WEATHER = SCHEMAS[26]
ORDER = SCHEMAS[27]
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "place_order", "parameters": ORDER}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "input_schema": WEATHER},
    {"name": "place_order", "input_schema": ORDER},
]
SCHEMA_OF = {"get_weather": WEATHER, "place_order": ORDER}


@pytest.fixture
def oai(standin_server):
    with openai.OpenAI(
        base_url=standin_server.url + "/v1", api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def claude(standin_server):
    with anthropic.Anthropic(base_url=standin_server.url, api_key="sk-test", max_retries=0) as c:
        yield c


def ask_openai(client, text="What is the weather in Paris?", **kwargs):
    return client.chat.completions.create(
        model="standin-chat", messages=[{"role": "user", "content": text}], **kwargs
    )


class TestOpenAITools:
    def test_auto_calls_a_tool_with_arguments_that_validate(self, oai):
        reply = ask_openai(oai, tools=OPENAI_TOOLS)
        (call,) = reply.choices[0].message.tool_calls
        assert reply.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)

    def test_tools_the_user_names_are_called_in_parallel_unless_disabled(self, oai):
        text = "Check get_weather for Paris, then place_order for an umbrella"
        calls = ask_openai(oai, text, tools=OPENAI_TOOLS).choices[0].message.tool_calls
        assert [c.function.name for c in calls] == ["get_weather", "place_order"]
        for call in calls:
            jsonschema.validate(json.loads(call.function.arguments), SCHEMA_OF[call.function.name])
        single = ask_openai(oai, text, tools=OPENAI_TOOLS, parallel_tool_calls=False)
        assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]

    def test_tool_choice_none_required_and_named(self, oai):
        none = ask_openai(oai, tools=OPENAI_TOOLS, tool_choice="none").choices[0]
        assert none.message.tool_calls is None and none.message.content.startswith("You said")
        named = ask_openai(
            oai,
            tools=OPENAI_TOOLS,
            tool_choice={"type": "function", "function": {"name": "place_order"}},
        ).choices[0]
        assert [c.function.name for c in named.message.tool_calls] == ["place_order"]
        with pytest.raises(openai.BadRequestError):
            ask_openai(
                oai,
                tools=OPENAI_TOOLS,
                tool_choice={"type": "function", "function": {"name": "missing"}},
            )

    def test_after_a_tool_result_auto_answers_in_text_and_required_calls_again(self, oai):
        messages = [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
        ]
        answer = oai.chat.completions.create(
            model="standin-chat", messages=messages, tools=OPENAI_TOOLS
        ).choices[0]
        assert answer.finish_reason == "stop"
        assert answer.message.content.startswith('The tool returned: "18 degrees and sunny".')
        again = oai.chat.completions.create(
            model="standin-chat", messages=messages, tools=OPENAI_TOOLS, tool_choice="required"
        ).choices[0]
        assert again.finish_reason == "tool_calls"

    def test_streamed_tool_calls_arrive_as_several_argument_fragments(self, oai):
        text = "get_weather and place_order please"
        stream = ask_openai(oai, text, tools=OPENAI_TOOLS, stream=True)
        fragments: dict[int, list[str]] = {}
        names = {}
        for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
                if call.function.name:
                    names[call.index] = call.function.name
                fragments.setdefault(call.index, []).append(call.function.arguments or "")
        assert names == {0: "get_weather", 1: "place_order"}
        for index, parts in fragments.items():
            assert len([p for p in parts if p]) >= 3
            jsonschema.validate(json.loads("".join(parts)), SCHEMA_OF[names[index]])


class TestOpenAIReplies:
    @pytest.mark.parametrize("stream", [False, True])
    def test_json_schema_response_format_validates(self, oai, stream):
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "order", "schema": ORDER, "strict": True},
        }
        if stream:
            chunks = ask_openai(oai, response_format=response_format, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = ask_openai(oai, response_format=response_format).choices[0].message.content
        jsonschema.validate(json.loads(text), ORDER)

    def test_json_object_response_format_is_a_json_object(self, oai):
        reply = ask_openai(oai, response_format={"type": "json_object"})
        assert isinstance(json.loads(reply.choices[0].message.content), dict)

    def test_sdk_parse_with_a_pydantic_model(self, oai):
        from pydantic import BaseModel

        class City(BaseModel):
            name: str
            population: int
            country_code: str | None

        parsed = oai.chat.completions.parse(
            model="standin-chat",
            messages=[{"role": "user", "content": "Tell me about Lyon"}],
            response_format=City,
        )
        assert parsed.choices[0].message.parsed.name == "Tell me about Lyon"

    def test_images_are_accepted_and_mentioned(self, oai):
        content = [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]
        reply = oai.chat.completions.create(
            model="standin-chat", messages=[{"role": "user", "content": content}]
        )
        assert "I see 2 images." in reply.choices[0].message.content
        assert reply.usage.prompt_tokens > 2 * 85

    def test_replies_as_long_as_real_models(self, standin_server, oai):
        reply = ask_openai(oai, extra_headers={"X-Standin-Reply-Tokens": "9000"}, max_tokens=32768)
        assert reply.usage.completion_tokens == 9000
        assert reply.choices[0].finish_reason == "stop"

    def test_logprobs_when_asked(self, oai):
        reply = ask_openai(oai, logprobs=True, top_logprobs=3, max_tokens=5)
        tokens = reply.choices[0].logprobs.content
        assert "".join(t.token for t in tokens) == reply.choices[0].message.content
        assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
        assert ask_openai(oai, max_tokens=5).choices[0].logprobs is None

    def test_a_repeated_long_prefix_reports_cached_tokens(self, oai):
        long = "Parley keeps every conversation. " * 400  # about 3,300 tokens
        first = ask_openai(oai, long + "First question?")
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        second = ask_openai(oai, long + "First question?")
        cached = second.usage.prompt_tokens_details.cached_tokens
        assert 1024 <= cached <= second.usage.prompt_tokens and cached % 128 == 0
        short = ask_openai(oai, "short")
        assert ask_openai(oai, "short").usage.prompt_tokens_details.cached_tokens == 0
        assert short.usage.prompt_tokens_details.cached_tokens == 0

    @pytest.mark.parametrize("encoding", ["float", "base64"])
    def test_embeddings_are_deterministic_unit_vectors(self, oai, standin_server, encoding):
        result = oai.embeddings.create(
            model="standin-embed", input=["hello", "world", "hello"], encoding_format=encoding
        )
        vectors = [item.embedding for item in result.data]
        if encoding == "base64":  # the SDK hands base64 over as it came
            vectors = [list(struct.unpack("<1536f", base64.b64decode(v))) for v in vectors]
        assert len(vectors) == 3 and len(vectors[0]) == 1536
        assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != vectors[1]
        assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, abs=1e-3)
        assert result.usage.prompt_tokens == 6

    def test_embeddings_dimensions_and_token_arrays(self, oai):
        short = oai.embeddings.create(model="standin-embed", input=[[1, 2, 3]], dimensions=64)
        assert len(short.data[0].embedding) == 64 and short.usage.prompt_tokens == 3
        with pytest.raises(openai.BadRequestError):
            oai.embeddings.create(model="standin-embed", input=[])

    def test_embeddings_faults_by_model_name(self, oai):
        with pytest.raises(openai.RateLimitError):
            oai.embeddings.create(model="standin-embed-429", input="x")


def ask_claude(client, content="What is the weather in Paris?", **kwargs):
    kwargs.setdefault("max_tokens", 1024)
    return client.messages.create(
        model="standin-chat", messages=[{"role": "user", "content": content}], **kwargs
    )


class TestAnthropic:
    def test_auto_any_tool_and_none(self, claude):
        (use,) = ask_claude(claude, tools=ANTHROPIC_TOOLS).content
        assert use.type == "tool_use" and use.name == "get_weather"
        jsonschema.validate(use.input, WEATHER)
        forced = ask_claude(
            claude, tools=ANTHROPIC_TOOLS, tool_choice={"type": "tool", "name": "place_order"}
        )
        assert [b.name for b in forced.content] == ["place_order"]
        jsonschema.validate(forced.content[0].input, ORDER)
        none = ask_claude(claude, tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"})
        assert none.stop_reason == "end_turn" and none.content[0].type == "text"

    def test_parallel_tool_use_unless_disabled(self, claude):
        text = "use get_weather and place_order"
        both = ask_claude(claude, text, tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
        assert [b.name for b in both.content] == ["get_weather", "place_order"]
        one = ask_claude(
            claude,
            text,
            tools=ANTHROPIC_TOOLS,
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        )
        assert [b.name for b in one.content] == ["get_weather"]

    def test_a_tool_result_gets_a_text_answer(self, claude):
        messages = [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "rainy"}],
            },
        ]
        reply = claude.messages.create(
            model="standin-chat", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
        )
        assert reply.stop_reason == "end_turn"
        assert reply.content[0].text.startswith('The tool returned: "rainy".')

    def test_streamed_tool_use_arrives_as_partial_json(self, claude):
        with claude.messages.stream(
            model="standin-chat",
            max_tokens=100,
            messages=[{"role": "user", "content": "place_order now"}],
            tools=ANTHROPIC_TOOLS,
        ) as stream:
            deltas = [
                e
                for e in stream
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
            ]
            final = stream.get_final_message()
        assert len(deltas) >= 3
        jsonschema.validate(final.content[0].input, ORDER)

    def test_structured_output_format_validates(self, claude):
        reply = ask_claude(
            claude, extra_body={"output_format": {"type": "json_schema", "schema": ORDER}}
        )
        jsonschema.validate(json.loads(reply.content[0].text), ORDER)

    def test_image_blocks_are_accepted_and_mentioned(self, claude):
        image = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        }
        reply = ask_claude(claude, [{"type": "text", "text": "Describe this"}, image])
        assert "I see 1 image." in reply.content[0].text

    def test_cache_control_writes_then_reads_the_prefix(self, claude):
        system = [
            {"type": "text", "text": "You are a careful assistant. " * 300},
            {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}},
        ]
        first = ask_claude(claude, "Hello", system=system)
        assert first.usage.cache_creation_input_tokens > 1024
        assert first.usage.cache_read_input_tokens == 0
        second = ask_claude(claude, "Something else", system=system)
        assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
        assert second.usage.cache_creation_input_tokens == 0
        assert second.usage.input_tokens < 20  # only the uncached user turn
        uncached = ask_claude(claude, "Hello", system="You are a careful assistant. " * 300)
        assert uncached.usage.cache_read_input_tokens == 0
        assert uncached.usage.cache_creation_input_tokens == 0

    def test_long_replies_are_allowed(self, claude):
        with claude.messages.stream(
            model="standin-chat",
            max_tokens=32768,
            messages=[{"role": "user", "content": "Write at length"}],
            extra_headers={"X-Standin-Reply-Tokens": "8192"},
        ) as stream:
            final = stream.get_final_message()
        assert final.usage.output_tokens == 8192 and final.stop_reason == "end_turn"

    def test_count_tokens_matches_what_a_message_reports(self, claude):
        kwargs = {
            "messages": [{"role": "user", "content": "How many tokens is this?"}],
            "system": "Be brief.",
            "tools": ANTHROPIC_TOOLS,
        }
        counted = claude.messages.count_tokens(model="standin-chat", **kwargs)
        sent = claude.messages.create(
            model="standin-chat", max_tokens=50, tool_choice={"type": "none"}, **kwargs
        )
        assert counted.input_tokens == sent.usage.input_tokens > 0
        with pytest.raises(anthropic.NotFoundError):
            claude.messages.count_tokens(model="gpt-nothing", **kwargs)
