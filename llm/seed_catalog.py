"""The default model catalog that ``manage.py seed_models`` loads.

Prices are USD per million tokens from the providers' public price lists; staff correct them
in the admin when providers change them (``seed_models`` never overwrites an edited row unless
``--update`` is given)."""

from decimal import Decimal


def _m(slug, name, provider, provider_model, window, output, price_in, price_out, **extra) -> dict:
    return {
        "slug": slug,
        "display_name": name,
        "provider": provider,
        "provider_model": provider_model,
        "context_window": window,
        "max_output_tokens": output,
        "input_price_per_mtok": Decimal(price_in),
        "output_price_per_mtok": Decimal(price_out),
        **extra,
    }


DEFAULT_CATALOG = [
    _m("gpt-4.1", "GPT-4.1", "openai", "gpt-4.1", 1_047_576, 32_768, "2.00", "8.00"),
    _m("gpt-4.1-mini", "GPT-4.1 mini", "openai", "gpt-4.1-mini", 1_047_576, 32_768, "0.40", "1.60"),
    _m("gpt-4.1-nano", "GPT-4.1 nano", "openai", "gpt-4.1-nano", 1_047_576, 32_768, "0.10", "0.40"),
    _m("gpt-4o", "GPT-4o", "openai", "gpt-4o", 128_000, 16_384, "2.50", "10.00"),
    _m("gpt-4o-mini", "GPT-4o mini", "openai", "gpt-4o-mini", 128_000, 16_384, "0.15", "0.60"),
    _m(
        "claude-opus-4-1",
        "Claude Opus 4.1",
        "anthropic",
        "claude-opus-4-1-20250805",
        200_000,
        32_000,
        "15.00",
        "75.00",
    ),
    _m(
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "anthropic",
        "claude-sonnet-4-5-20250929",
        200_000,
        64_000,
        "3.00",
        "15.00",
    ),
    _m(
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "anthropic",
        "claude-haiku-4-5-20251001",
        200_000,
        64_000,
        "1.00",
        "5.00",
    ),
    _m(
        "claude-sonnet-4",
        "Claude Sonnet 4",
        "anthropic",
        "claude-sonnet-4-20250514",
        200_000,
        64_000,
        "3.00",
        "15.00",
    ),
    _m(
        "claude-3-5-haiku",
        "Claude 3.5 Haiku",
        "anthropic",
        "claude-3-5-haiku-20241022",
        200_000,
        8_192,
        "0.80",
        "4.00",
    ),
    # Local stand-ins: Parley's own fake provider, so a fresh install answers without any key.
    _m(
        "standin-gpt",
        "Local stand-in (OpenAI wire format)",
        "openai",
        "standin-chat",
        16_384,
        1_024,
        "1.00",
        "2.00",
        is_standin=True,
    ),
    _m(
        "standin-claude",
        "Local stand-in (Anthropic wire format)",
        "anthropic",
        "standin-chat",
        16_384,
        1_024,
        "1.00",
        "2.00",
        is_standin=True,
    ),
]
