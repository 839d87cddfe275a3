"""Prompt caching, end to end: the stand-in reports cached prompt tokens as each provider
does, Parley stores them on the call's Usage, prices them at the catalog's cache prices, and
shows them in the usage report."""

from decimal import Decimal

import pytest

from llm.lifecycle import call_cost
from llm.models import Usage
from tests.compat.conftest import recorded_calls
from tests.llm.factories import StandinModelFactory

LONG = "Parley keeps every conversation and its cost in view. " * 300  # ~4,000 tokens
PRICES = {
    "input_price_per_mtok": Decimal("3.00"),
    "output_price_per_mtok": Decimal("15.00"),
    "cache_read_price_per_mtok": Decimal("0.30"),
    "cache_write_price_per_mtok": Decimal("3.75"),
}


@pytest.fixture
def cached_models(catalog):
    return {
        family: StandinModelFactory(
            slug=f"{family}-cached",
            provider=family,
            context_window=200_000,
            max_output_tokens=32_768,
            **PRICES,
        )
        for family in ("openai", "anthropic")
    }


def test_anthropic_cache_writes_then_reads_are_priced(anthropic_client, cached_models):
    system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    for question in ("First question?", "Second question?"):
        anthropic_client.messages.create(
            model="anthropic-cached",
            max_tokens=50,
            system=system,
            messages=[{"role": "user", "content": question}],
        )
    first, second = (call.usage for call in recorded_calls(2))
    model = cached_models["anthropic"]
    assert first.cache_write_tokens > 1024 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert second.cache_write_tokens == 0
    for usage in (first, second):
        assert usage.input_tokens > usage.cache_read_tokens + usage.cache_write_tokens
        assert usage.cost_micros == call_cost(
            model,
            usage.input_tokens,
            usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
    # Read from the cache, the long prompt costs well under a fifth of writing it.
    assert second.cost_micros * 5 < first.cost_micros


def test_openai_automatic_cache_reads_are_priced_and_reported(
    openai_client, cached_models, auth_client
):
    messages = [{"role": "system", "content": LONG}, {"role": "user", "content": "Hello?"}]
    replies = [
        openai_client.chat.completions.create(model="openai-cached", messages=messages)
        for _ in range(2)
    ]
    cached = replies[1].usage.prompt_tokens_details.cached_tokens
    assert replies[0].usage.prompt_tokens_details.cached_tokens == 0 and cached >= 1024
    first, second = (call.usage for call in recorded_calls(2))
    assert (first.cache_read_tokens, second.cache_read_tokens) == (0, cached)
    assert second.input_tokens == replies[1].usage.prompt_tokens  # cached ones included
    assert second.cost_micros < first.cost_micros
    total = auth_client.get("/api/v1/usage/").json()["total"]
    assert total["cache_read_tokens"] == cached and total["cache_write_tokens"] == 0
    assert Usage.objects.count() == 2
