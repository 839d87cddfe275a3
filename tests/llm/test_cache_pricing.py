"""Prompt caching in cost: cached input tokens priced at the catalog's cache-read and
cache-write prices, and budgets reserving enough for a prompt that is all cache writes."""

from decimal import Decimal

import pytest

from llm.admission import worst_case_cost_micros
from llm.providers import completion_cost_micros
from llm.seed_catalog import DEFAULT_CATALOG
from tests.llm.factories import StandinModelFactory

SONNET = {
    "input_price_per_mtok": Decimal("3.00"),
    "output_price_per_mtok": Decimal("15.00"),
    "cache_read_price_per_mtok": Decimal("0.30"),
    "cache_write_price_per_mtok": Decimal("3.75"),
}


def test_cached_tokens_are_priced_at_the_cache_prices():
    # 10,000 prompt tokens: 8,000 read from the cache, 1,500 written to it, 500 plain.
    cost = completion_cost_micros(
        input_tokens=10_000,
        output_tokens=200,
        cache_read_tokens=8_000,
        cache_write_tokens=1_500,
        **SONNET,
    )
    # In micro-dollars: 500 plain, 8,000 read, 1,500 written, 200 out.
    assert cost == 1_500 + 2_400 + 5_625 + 3_000
    uncached = completion_cost_micros(input_tokens=10_000, output_tokens=200, **SONNET)
    assert uncached == 33_000
    # A long prompt read from the cache costs a tenth as much as a fresh one.
    read = completion_cost_micros(
        input_tokens=100_000, output_tokens=0, cache_read_tokens=100_000, **SONNET
    )
    fresh = completion_cost_micros(input_tokens=100_000, output_tokens=0, **SONNET)
    assert fresh == 10 * read == 300_000


def test_a_fraction_of_a_micro_dollar_is_rounded_up():
    cost = completion_cost_micros(
        input_tokens=3, output_tokens=0, cache_read_tokens=3, **SONNET
    )  # 3 tokens at $0.30/Mtok: 0.9 micro-dollars
    assert cost == 1


def test_without_cache_prices_cached_tokens_cost_the_input_price():
    cost = completion_cost_micros(
        input_tokens=1_000,
        output_tokens=0,
        cache_read_tokens=600,
        cache_write_tokens=400,
        input_price_per_mtok=Decimal("2"),
        output_price_per_mtok=Decimal("8"),
    )
    assert cost == 2_000


@pytest.mark.django_db
def test_the_worst_case_reserved_covers_a_prompt_written_to_the_cache():
    model = StandinModelFactory(slug="cachey", provider="anthropic", **SONNET)
    worst = worst_case_cost_micros(model=model, input_tokens=10_000, max_tokens=0)
    all_written = completion_cost_micros(
        input_tokens=10_000, output_tokens=0, cache_write_tokens=10_000, **SONNET
    )
    assert worst == all_written == 37_500


def test_the_seeded_catalog_has_cache_prices():
    for entry in DEFAULT_CATALOG:
        if entry.get("kind") == "embedding":
            continue
        read = entry["cache_read_price_per_mtok"]
        assert read < entry["input_price_per_mtok"], entry["slug"]
        if entry["provider"] == "anthropic":  # Anthropic charges 1.25x to write the cache
            assert entry["cache_write_price_per_mtok"] == entry["input_price_per_mtok"] * Decimal(
                "1.25"
            ), entry["slug"]
