"""The one pricing function: what a call costs at catalog prices, in integer micro-dollars."""

from decimal import Decimal

from project.money import micros_ceil_div, price_micros_per_mtok

MILLION = 1_000_000


def completion_cost_micros(
    *,
    input_tokens: int,
    output_tokens: int,
    input_price_per_mtok: Decimal,
    output_price_per_mtok: Decimal,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_read_price_per_mtok: Decimal | None = None,
    cache_write_price_per_mtok: Decimal | None = None,
) -> int:
    """Micro-dollars for the tokens at per-million-token prices (USD). Integer arithmetic
    throughout; a fraction of a micro-dollar is rounded UP, so no call is ever under-charged
    (at most one micro-dollar over).

    ``input_tokens`` counts every prompt token; the cached ones among them (read from or
    written to the provider's prompt cache) are priced at the cache prices instead, which
    default to the input price when the catalog has none."""
    input_price = price_micros_per_mtok(input_price_per_mtok)
    read_price = (
        input_price
        if cache_read_price_per_mtok is None
        else price_micros_per_mtok(cache_read_price_per_mtok)
    )
    write_price = (
        input_price
        if cache_write_price_per_mtok is None
        else price_micros_per_mtok(cache_write_price_per_mtok)
    )
    uncached = input_tokens - cache_read_tokens - cache_write_tokens
    total = (
        uncached * input_price
        + cache_read_tokens * read_price
        + cache_write_tokens * write_price
        + output_tokens * price_micros_per_mtok(output_price_per_mtok)
    )
    return micros_ceil_div(total, MILLION)
