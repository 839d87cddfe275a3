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
) -> Decimal:
    """USD for the tokens at per-million-token prices, rounded half-up to 0.000001."""
    cost = (
        Decimal(input_tokens) * Decimal(input_price_per_mtok)
        + Decimal(output_tokens) * Decimal(output_price_per_mtok)
    ) / MILLION
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
