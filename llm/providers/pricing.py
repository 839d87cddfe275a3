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
) -> int:
    """Micro-dollars for the tokens at per-million-token prices (USD). Integer arithmetic
    throughout; a fraction of a micro-dollar is rounded UP, so no call is ever under-charged
    (at most one micro-dollar over)."""
    total = input_tokens * price_micros_per_mtok(
        input_price_per_mtok
    ) + output_tokens * price_micros_per_mtok(output_price_per_mtok)
    return micros_ceil_div(total, MILLION)
