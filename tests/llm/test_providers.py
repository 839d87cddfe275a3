"""The provider layer through the real openai and anthropic SDKs, over HTTP, against the
stand-in provider: replies, streaming, usage, every fault's classification, timeouts."""

import json
import logging
import time
from decimal import Decimal

import pytest

from llm.providers import (
    ChatMessage,
    ChatRequest,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    TransientProviderError,
    completion_cost_micros,
    estimate_tokens,
    get_provider,
    trim_messages,
)
from llm.providers.canonical import Tool
from llm.standin.behaviour import prompt_tokens
from project.money import micros, usd

FAKE_KEY = "sk-parley-test-key-9f8e7d6c5b4a"
PROVIDERS = ["openai", "anthropic"]


def provider_for(standin_server, name, timeout=10.0):
    base_url = standin_server.url + "/v1" if name == "openai" else standin_server.url
    return get_provider(name, api_key=FAKE_KEY, base_url=base_url, timeout=timeout)


def ask(model="standin-chat", text="Tell me about Parley", system="", max_tokens=200):
    return ChatRequest(
        model=model, messages=[ChatMessage("user", text)], system=system, max_tokens=max_tokens
    )


@pytest.mark.parametrize("name", PROVIDERS)
class TestReplies:
    def test_streamed_reply_with_deltas_in_order_and_usage(self, standin_server, name):
        deltas = []
        result = provider_for(standin_server, name).complete(ask(), on_delta=deltas.append)
        assert len(deltas) == 24  # the stand-in's reply length, one token per delta
        assert "".join(deltas) == result.text
        assert result.text.startswith('You said: "Tell me about Parley".')
        assert result.output_tokens == 24
        assert result.input_tokens == prompt_tokens(
            "", [{"role": "user", "content": "Tell me about Parley"}]
        )
        assert result.finish_reason == "stop"
        assert result.response_id
        assert 0 <= result.time_to_first_token_ms <= result.latency_ms

    def test_replies_are_deterministic(self, standin_server, name):
        provider = provider_for(standin_server, name)
        assert provider.complete(ask()).text == provider.complete(ask()).text
        assert provider.complete(ask()).text != provider.complete(ask(text="Other")).text

    def test_system_prompt_is_delivered(self, standin_server, name):
        result = provider_for(standin_server, name).complete(ask(system="Answer in French."))
        assert "system prompt of 17 characters" in result.text

    def test_max_tokens_cuts_the_reply(self, standin_server, name):
        result = provider_for(standin_server, name).complete(ask(max_tokens=5))
        assert result.output_tokens == 5
        assert result.finish_reason == "length"

    def test_conversation_history_is_sent(self, standin_server, name):
        request = ChatRequest(
            model="standin-chat",
            messages=[
                ChatMessage("user", "first"),
                ChatMessage("assistant", "reply"),
                ChatMessage("user", "second question"),
            ],
            max_tokens=50,
        )
        assert (
            'You said: "second question"'
            in provider_for(standin_server, name).complete(request).text
        )

    def test_aborting_from_the_callback_stops_the_stream(self, standin_server, name):
        seen = []

        def stop_after_three(text):
            seen.append(text)
            if len(seen) == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            provider_for(standin_server, name).complete(
                ask("standin-tps50-len100"), on_delta=stop_after_three
            )
        assert len(seen) == 3


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    ("model", "error_class", "status"),
    [
        ("standin-429", TransientProviderError, 429),
        ("standin-500", TransientProviderError, 500),
        ("standin-529", TransientProviderError, 529),
        ("standin-400", PermanentProviderError, 400),
        ("standin-401", PermanentProviderError, 401),
        ("gpt-unknown", PermanentProviderError, 404),
        ("standin-drop", TransientProviderError, None),
        ("standin-errorevent", TransientProviderError, None),
    ],
)
def test_faults_are_classified(standin_server, name, model, error_class, status):
    with pytest.raises(ProviderError) as caught:
        provider_for(standin_server, name).complete(ask(model))
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert FAKE_KEY not in str(caught.value)


@pytest.mark.parametrize("name", PROVIDERS)
def test_retry_after_is_read(standin_server, name):
    provider = provider_for(standin_server, name)
    request = ask("standin-429")
    with pytest.raises(TransientProviderError) as caught:
        provider.complete(request)
    assert caught.value.retry_after == 1.0
    from llm.providers.base import parse_retry_after

    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert 0 < parse_retry_after({"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"})


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_hung_provider_times_out_as_transient(standin_server, name):
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="did not answer in time"):
        provider_for(standin_server, name, timeout=0.5).complete(ask("standin-hang"))
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("name", PROVIDERS)
def test_flaky_fails_once_then_succeeds(standin_server, name):
    provider = provider_for(standin_server, name)
    request = ask("standin-flaky", text=f"flaky for {name}")
    with pytest.raises(TransientProviderError):
        provider.complete(request)
    assert provider.complete(request).output_tokens == 24


def test_unreachable_provider_is_transient():
    provider = get_provider("openai", api_key=FAKE_KEY, base_url="http://127.0.0.1:1/v1", timeout=1)
    with pytest.raises(TransientProviderError, match="Could not connect"):
        provider.complete(ask())


@pytest.mark.parametrize("name", PROVIDERS)
def test_keys_never_reach_logs_or_errors(standin_server, name, caplog):
    caplog.set_level(logging.DEBUG)
    provider = provider_for(standin_server, name)
    provider.complete(ask())
    with pytest.raises(ProviderError) as caught:
        provider.complete(ask("standin-401"))
    assert FAKE_KEY not in str(caught.value) and FAKE_KEY not in repr(caught.value)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    rendered = "\n".join(handler.format(r) for r in caplog.records if handler.filter(r))
    assert caplog.records  # the SDKs did log at DEBUG
    assert FAKE_KEY not in rendered


class TestContextTrimming:
    def message(self, role, tokens):
        return ChatMessage(role, "x" * (tokens * 3))  # 3 bytes a token in the estimate

    def test_keeps_the_newest_that_fit(self):
        messages = [
            self.message("user", 100),
            self.message("assistant", 100),
            self.message("user", 100),
        ]
        # each message costs 104 (100 + overhead 4); window leaves room for exactly two
        kept = trim_messages(
            system="", messages=messages, context_window=104 * 2 + 3 + 50, max_tokens=50
        )
        assert kept == messages[2:]  # the assistant reply is dropped too: user must come first
        everything = trim_messages(
            system="", messages=messages, context_window=104 * 3 + 3 + 50, max_tokens=50
        )
        assert everything == messages

    def test_exact_edge(self):
        messages = [self.message("user", 10), self.message("user", 10)]
        fits = 14 * 2 + 3 + 100
        assert (
            len(trim_messages(system="", messages=messages, context_window=fits, max_tokens=100))
            == 2
        )
        assert (
            len(
                trim_messages(system="", messages=messages, context_window=fits - 1, max_tokens=100)
            )
            == 1
        )

    def test_system_prompt_is_always_kept_and_counted(self):
        messages = [self.message("user", 10), self.message("user", 10)]
        system = "s" * 30  # 10 tokens + 4
        fits = 14 * 2 + 3 + 14 + 100
        assert (
            len(
                trim_messages(system=system, messages=messages, context_window=fits, max_tokens=100)
            )
            == 2
        )
        assert (
            len(
                trim_messages(
                    system=system, messages=messages, context_window=fits - 1, max_tokens=100
                )
            )
            == 1
        )

    def test_too_long_even_alone(self):
        with pytest.raises(PermanentProviderError, match="too long"):
            trim_messages(
                system="", messages=[self.message("user", 500)], context_window=400, max_tokens=100
            )

    def test_estimate_is_conservative(self):
        english = "The quick brown fox jumps over the lazy dog. " * 20
        assert estimate_tokens(english) >= len(english) / 4  # real tokenizers: ~4 chars/token
        assert estimate_tokens("日本語のテキスト") >= 8


def test_cost_is_integer_micro_dollars_rounded_up():
    cost = completion_cost_micros(
        input_tokens=1234,
        output_tokens=567,
        input_price_per_mtok=Decimal("3"),
        output_price_per_mtok=Decimal("15"),
    )
    assert cost == 12_207  # $0.012207 exactly
    assert isinstance(cost, int)
    # A fraction of a micro-dollar is charged as a whole one: never under-charged.
    assert (
        completion_cost_micros(
            input_tokens=1,
            output_tokens=0,
            input_price_per_mtok=Decimal("0.0001"),
            output_price_per_mtok=Decimal(0),
        )
        == 1
    )
    assert (
        completion_cost_micros(
            input_tokens=1433,
            output_tokens=0,
            input_price_per_mtok=Decimal("0.15"),
            output_price_per_mtok=Decimal("0.60"),
        )
        == 215
    )  # 214.95 micro-dollars, rounded up
    assert (
        completion_cost_micros(
            input_tokens=0,
            output_tokens=0,
            input_price_per_mtok=Decimal(1),
            output_price_per_mtok=Decimal(1),
        )
        == 0
    )


def test_dollars_and_micro_dollars_convert_exactly():
    assert micros("0.000215") == 215 and usd(215) == Decimal("0.000215")
    assert micros(Decimal("12345678.123456")) == 12_345_678_123_456
    assert usd(micros("0.1") + micros("0.2")) == Decimal("0.3")  # no float on the way
    assert str(usd(1)) == "0.000001"


@pytest.mark.django_db
def test_openai_compatible_endpoint_from_the_catalog(standin_server, monkeypatch):
    """A catalog entry for an OpenAI-compatible server (Ollama, vLLM...) with its own base URL
    and, optionally, the name of the variable holding its key."""
    from llm.catalog import provider_target
    from llm.models import LLMModel

    entry = LLMModel.objects.create(
        slug="local-llama",
        display_name="Local Llama",
        provider="openai_compatible",
        provider_model="standin-chat",
        base_url=standin_server.url + "/v1",
        context_window=8192,
        max_output_tokens=512,
    )
    target = provider_target(entry)
    assert target.api_key == "none"  # keyless local servers still get a placeholder
    entry.api_key_env = "LOCAL_LLAMA_KEY"
    monkeypatch.setenv("LOCAL_LLAMA_KEY", "sk-local-secret-123456")
    target = provider_target(entry)
    assert target.api_key == "sk-local-secret-123456"
    assert "sk-local-secret" not in repr(target)
    provider = get_provider(
        target.provider, api_key=target.api_key, base_url=target.base_url, timeout=5
    )
    assert provider.complete(ask()).output_tokens == 24


@pytest.mark.parametrize("name", PROVIDERS)
def test_sampling_and_stop_sequences_are_sent_in_the_providers_own_fields(standin_server, name):
    request = ChatRequest(
        model="standin-chat",
        messages=[ChatMessage("user", "Tell me about Parley")],
        max_tokens=50,
        temperature=0.3,
        top_p=0.9,
        stop=("Parley",),
    )
    result = provider_for(standin_server, name).complete(request)
    body = standin_server.last_request.body
    assert body["top_p"] == 0.9 and body["temperature"] == 0.3
    stop_field = "stop" if name == "openai" else "stop_sequences"
    assert body[stop_field] == ["Parley"]
    assert result.text == 'You said: "Tell me about '  # cut before the stop sequence
    assert result.finish_reason == "stop"
    if name == "anthropic":
        assert result.stop_sequence == "Parley"


TOOLS = {
    "openai": [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ],
    "anthropic": [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}],
}


@pytest.mark.parametrize("name", PROVIDERS)
def test_canonical_tools_reach_the_provider_in_its_format_and_calls_come_back(standin_server, name):
    request = ChatRequest(
        model="standin-chat",
        messages=[ChatMessage("user", "find the weather")],
        max_tokens=50,
        tools=(Tool("lookup", parameters={"type": "object", "properties": {}}),),
    )
    result = provider_for(standin_server, name).complete(request)
    assert standin_server.last_request.body["tools"] == TOOLS[name]
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "lookup"
    assert call.id.startswith("call_" if name == "openai" else "toolu_")
    assert json.loads(call.arguments) == {}  # what the empty schema allows


@pytest.mark.parametrize("name", PROVIDERS)
def test_async_stream_yields_deltas_then_the_result(standin_server, name):
    import asyncio

    from llm.providers import CompletionResult, get_async_provider

    async def run():
        base_url = standin_server.url + "/v1" if name == "openai" else standin_server.url
        provider = get_async_provider(name, api_key=FAKE_KEY, base_url=base_url, timeout=10)
        return [item async for item in provider.astream(ask())]

    items = asyncio.run(run())
    *deltas, result = items
    assert isinstance(result, CompletionResult)
    assert len(deltas) == 24 and "".join(deltas) == result.text
    assert result.output_tokens == 24


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    ("model", "error_class", "status"),
    [
        ("standin-429", TransientProviderError, 429),
        ("standin-400", PermanentProviderError, 400),
        ("standin-errorevent", TransientProviderError, 500),  # asked whole: a 500
        ("standin-drop", TransientProviderError, None),
        ("standin-hang", ProviderTimeout, None),
    ],
)
def test_async_whole_reply_faults_are_translated_like_sync_ones(
    standin_server, name, model, error_class, status
):
    import asyncio

    from llm.providers import get_async_provider

    async def run():
        base_url = standin_server.url + "/v1" if name == "openai" else standin_server.url
        provider = get_async_provider(name, api_key=FAKE_KEY, base_url=base_url, timeout=0.5)
        return await provider.acomplete(ask(model))

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    assert type(caught.value) is error_class
    assert caught.value.status_code == status


@pytest.mark.parametrize("name", PROVIDERS)
def test_async_stream_failing_mid_way_raises_after_its_deltas(standin_server, name):
    import asyncio

    from llm.providers import get_async_provider

    seen = []

    async def run():
        base_url = standin_server.url + "/v1" if name == "openai" else standin_server.url
        provider = get_async_provider(name, api_key=FAKE_KEY, base_url=base_url, timeout=5)
        async for item in provider.astream(ask("standin-errorevent")):
            seen.append(item)

    with pytest.raises(TransientProviderError):
        asyncio.run(run())
    assert len(seen) == 12 and all(isinstance(item, str) for item in seen)


@pytest.mark.parametrize("name", PROVIDERS)
def test_async_whole_reply_matches_the_streamed_one(standin_server, name):
    import asyncio

    from llm.providers import get_async_provider

    async def run():
        base_url = standin_server.url + "/v1" if name == "openai" else standin_server.url
        provider = get_async_provider(name, api_key=FAKE_KEY, base_url=base_url, timeout=5)
        return await provider.acomplete(ask(max_tokens=10))

    result = asyncio.run(run())
    streamed = provider_for(standin_server, name).complete(ask(max_tokens=10))
    assert standin_server.last_request.body["stream"] is True
    assert (result.text, result.finish_reason, result.output_tokens, result.input_tokens) == (
        streamed.text,
        "length",
        10,
        streamed.input_tokens,
    )
