"""Anthropic's own SDK against a live Parley: messages plain and streamed for both provider
families (OpenAI models translated), x-api-key, tools for Anthropic models, and the SDK's
exception classes."""

import anthropic
import pytest

from llm.models import Usage
from tests.compat.conftest import FAMILIES, faulty_model, recorded_call

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "Tell me about Parley"}]
REPLY_START = 'You said: "Tell me about Parley". (Following a system prompt of 9 characters.)'


def slug(family: str) -> str:
    return "gpt-standin" if family == "openai" else "claude-standin"


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_message_is_translated_and_accounted(anthropic_client, standin, family):
    message = anthropic_client.messages.create(
        model=slug(family),
        system="Be brief.",
        messages=MESSAGES,
        max_tokens=100,
        metadata={"user_id": "alice"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(REPLY_START)
    assert message.stop_reason == "end_turn"
    assert message.model == slug(family)
    assert message.usage.output_tokens == 24 and message.usage.input_tokens > 0

    sent = standin.last_request
    if family == "openai":  # translated: the system prompt as the first message
        assert sent.path == "/v1/chat/completions"
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert sent.path == "/v1/messages" and sent.body["system"] == "Be brief."
    call = recorded_call()
    assert message.id == f"msg_{call.id.hex}"
    assert (call.endpoint, call.status, call.output_tokens, call.client_user) == (
        "messages",
        "completed",
        24,
        "alice",
    )
    assert Usage.objects.get().cost_micros == call.cost_micros


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_message_events(anthropic_client, family):
    with anthropic_client.messages.stream(
        model=slug(family), system="Be brief.", messages=MESSAGES, max_tokens=100
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 24
    assert "".join(pieces) == final.content[0].text
    assert final.content[0].text.startswith(REPLY_START)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 24
    call = recorded_call()
    assert (call.status, call.stream, final.usage.input_tokens) == (
        "completed",
        True,
        call.input_tokens,
    )


def test_raw_stream_event_order(anthropic_client):
    events = list(
        anthropic_client.messages.create(
            model="gpt-standin", messages=MESSAGES, max_tokens=5, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 5
    assert events[-2].delta.stop_reason == "max_tokens"


@pytest.mark.parametrize("family", FAMILIES)
def test_max_tokens_above_the_models_is_lowered_to_it(anthropic_client, standin, family):
    """Clients send their own idea of a model's limit when the user sets none (the Vercel AI
    SDK 128,000 for a "claude-" name it does not know, litellm for any Anthropic model it does
    not know): the catalog's limit (1,024 here) applies, as for a call that sets none."""
    message = anthropic_client.messages.create(
        # With a timeout of its own: the SDK asks for streaming at this size otherwise.
        model=slug(family),
        messages=MESSAGES,
        max_tokens=128_000,
        timeout=60,
    )
    assert message.stop_reason == "end_turn"
    assert standin.last_request.body["max_tokens"] == 1_024
    assert recorded_call().status == "completed"


def test_stop_sequences_for_an_openai_model(anthropic_client, standin):
    message = anthropic_client.messages.create(
        model="gpt-standin", messages=MESSAGES, max_tokens=100, stop_sequences=["Parley"]
    )
    assert standin.last_request.body["stop"] == ["Parley"]
    assert message.content[0].text == 'You said: "Tell me about '


def test_x_api_key_header_authenticates(parley, api_key):
    import httpx

    response = httpx.post(
        f"{parley}/v1/messages",
        headers={"x-api-key": api_key.secret, "anthropic-version": "2023-06-01"},
        json={"model": "claude-standin", "max_tokens": 20, "messages": MESSAGES},
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"].startswith('You said: "Tell me about Parley"')
    refused = httpx.post(
        f"{parley}/v1/messages",
        headers={"x-api-key": "prl_bad_key", "anthropic-version": "2023-06-01"},
        json={"model": "claude-standin", "max_tokens": 20, "messages": MESSAGES},
    )
    assert refused.status_code == 401
    assert refused.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Invalid, expired or revoked API key.",
        },
    }


def test_tools_pass_through_to_an_anthropic_model(anthropic_client, standin):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"name": "weather", "input_schema": schema}]
    message = anthropic_client.messages.create(
        model="claude-standin", messages=MESSAGES, max_tokens=100, tools=tools
    )
    assert standin.last_request.body["tools"] == tools
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert (block.type, block.name, block.input) == (
        "tool_use",
        "weather",
        {"city": "Tell me about Parley"},
    )
    with anthropic_client.messages.stream(
        model="claude-standin", messages=MESSAGES, max_tokens=100, tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert final.content[-1].input == {"city": "Tell me about Parley"}
    # The tool's result goes back as Anthropic content blocks, untouched.
    follow_up = anthropic_client.messages.create(
        model="claude-standin",
        max_tokens=100,
        tools=tools,
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert standin.last_request.body["messages"][-1]["content"][0]["type"] == "tool_result"
    assert follow_up.stop_reason == "end_turn"


def test_untranslatable_content_is_a_400_naming_it_once(anthropic_client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(
            model="gpt-standin",
            max_tokens=10,
            messages=MESSAGES,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith("'tools'")
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(
            model="gpt-standin", max_tokens=10, messages=MESSAGES, extra_body={"top_k": 5}
        )
    assert caught.value.body["error"]["message"].startswith("OpenAI models take no top_k")
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.post(  # the SDK itself insists on max_tokens
            "/v1/messages", cast_to=object, body={"model": "gpt-standin", "messages": MESSAGES}
        )
    assert caught.value.body["error"]["message"] == "max_tokens: Field required"


def test_errors_map_to_the_sdks_exception_classes(anthropic_client, parley, settings):
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.create(model="claude-9", messages=MESSAGES, max_tokens=10)
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(
            model="claude-standin",
            messages=MESSAGES,
            max_tokens=10,
            extra_body={"temperature": 3},  # this SDK version no longer offers the argument
        )
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.create(
            model=faulty_model("anthropic", "429").slug, messages=MESSAGES, max_tokens=10
        )
    assert caught.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client.messages.create(
            model=faulty_model("openai", "500").slug, messages=MESSAGES, max_tokens=10
        )
    with anthropic.Anthropic(base_url=parley, api_key="prl_x_y", max_retries=0) as stranger:
        with pytest.raises(anthropic.AuthenticationError):
            stranger.messages.create(model="claude-standin", messages=MESSAGES, max_tokens=10)


def test_mid_stream_failure_is_an_error_event(anthropic_client):
    model = faulty_model("anthropic", "errorevent")
    with pytest.raises(anthropic.APIStatusError):
        with anthropic_client.messages.stream(
            model=model.slug, messages=MESSAGES, max_tokens=50
        ) as stream:
            for _ in stream.text_stream:
                pass


def test_anthropic_sdk_lists_models(anthropic_client):
    ids = {model.id for model in anthropic_client.models.list()}
    assert {"gpt-standin", "claude-standin"} <= ids
