"""Cost of a completion from catalog prices, in Decimal only."""

from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000001")  # a millionth of a dollar, the precision stored


def completion_cost(
    *,
    input_tokens: int,
    output_tokens: int,
    input_price_per_mtok: Decimal,
    output_price_per_mtok: Decimal,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_read_price_per_mtok: Decimal | None = None,
    cache_write_price_per_mtok: Decimal | None = None,
) -> Decimal:
    """USD for the tokens at per-million-token prices, rounded half-up to 0.000001.

    ``input_tokens`` counts every prompt token; the cached ones among them (read from or
    written to the provider's prompt cache) are priced at the cache prices instead, which
    default to the input price when the catalog has none."""
    input_price = Decimal(input_price_per_mtok)
    read_price = input_price if cache_read_price_per_mtok is None else cache_read_price_per_mtok
    write_price = input_price if cache_write_price_per_mtok is None else cache_write_price_per_mtok
    uncached = input_tokens - cache_read_tokens - cache_write_tokens
    cost = (
        Decimal(uncached) * input_price
        + Decimal(cache_read_tokens) * Decimal(read_price)
        + Decimal(cache_write_tokens) * Decimal(write_price)
        + Decimal(output_tokens) * Decimal(output_price_per_mtok)
    ) / MILLION
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
