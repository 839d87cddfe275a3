"""Money as integer micro-dollars (a millionth of a USD), the one unit every amount is stored,
summed and compared in. Integers are exact on every database: SQLite turns a DECIMAL column
into a float when it adds or sums, so a settle there could leave -5e-19 of a reservation and
fail the ledger's non-negative constraint. Dollars (``Decimal``) appear only at the edges:
serializers, the admin, error messages."""

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
USD_QUANTUM = Decimal("0.000001")  # what one micro-dollar is in dollars


def micros(usd: Decimal | int | str) -> int:
    """``usd`` dollars as micro-dollars, exact for any amount with up to six decimals (more
    are rounded half-up: a limit typed as $0.0000005 becomes 1 micro-dollar)."""
    return int((Decimal(usd) * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def usd(amount_micros: int) -> Decimal:
    """``amount_micros`` as a dollar ``Decimal`` with six decimals, for display."""
    return (Decimal(int(amount_micros)) / MICROS_PER_USD).quantize(USD_QUANTUM)


def dollars(amount_micros: int | None) -> str:
    """``$0.000215`` for display (admin), ``-`` for no amount."""
    return "-" if amount_micros is None else f"${usd(amount_micros)}"


def micros_ceil_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded up, in integers (never under-charge)."""
    return -(-numerator // denominator)


def price_micros_per_mtok(price_usd_per_mtok: Decimal | int | str) -> int:
    """A catalog price (USD per million tokens, four decimals) as micro-dollars per million
    tokens: exact for the catalog's precision, rounded up beyond it."""
    return int((Decimal(price_usd_per_mtok) * MICROS_PER_USD).to_integral_value(ROUND_CEILING))
