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
    _m(
        "gpt-4.1",
        "GPT-4.1",
        "openai",
        "gpt-4.1",
        1_047_576,
        32_768,
        "2.00",
        "8.00",
        cache_read_price_per_mtok=Decimal("0.50"),
    ),
    _m(
        "gpt-4.1-mini",
        "GPT-4.1 mini",
        "openai",
        "gpt-4.1-mini",
        1_047_576,
        32_768,
        "0.40",
        "1.60",
        cache_read_price_per_mtok=Decimal("0.10"),
    ),
    _m(
        "gpt-4.1-nano",
        "GPT-4.1 nano",
        "openai",
        "gpt-4.1-nano",
        1_047_576,
        32_768,
        "0.10",
        "0.40",
        cache_read_price_per_mtok=Decimal("0.025"),
    ),
    _m(
        "gpt-4o",
        "GPT-4o",
        "openai",
        "gpt-4o",
        128_000,
        16_384,
        "2.50",
        "10.00",
        cache_read_price_per_mtok=Decimal("1.25"),
    ),
    _m(
        "gpt-4o-mini",
        "GPT-4o mini",
        "openai",
        "gpt-4o-mini",
        128_000,
        16_384,
        "0.15",
        "0.60",
        cache_read_price_per_mtok=Decimal("0.075"),
    ),
    _m(
        "claude-opus-4-1",
        "Claude Opus 4.1",
        "anthropic",
        "claude-opus-4-1-20250805",
        200_000,
        32_000,
        "15.00",
        "75.00",
        cache_read_price_per_mtok=Decimal("1.50"),
        cache_write_price_per_mtok=Decimal("18.75"),
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
        cache_read_price_per_mtok=Decimal("0.30"),
        cache_write_price_per_mtok=Decimal("3.75"),
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
        cache_read_price_per_mtok=Decimal("0.10"),
        cache_write_price_per_mtok=Decimal("1.25"),
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
        cache_read_price_per_mtok=Decimal("0.30"),
        cache_write_price_per_mtok=Decimal("3.75"),
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
        cache_read_price_per_mtok=Decimal("0.08"),
        cache_write_price_per_mtok=Decimal("1.00"),
    ),
    # Local stand-ins: Parley's own fake provider, so a fresh install answers without any key.
    _m(
        "standin-gpt",
        "Local stand-in (OpenAI wire format)",
        "openai",
        "standin-chat",
        200_000,
        32_768,
        "1.00",
        "2.00",
        cache_read_price_per_mtok=Decimal("0.50"),
        is_standin=True,
    ),
    _m(
        "standin-claude",
        "Local stand-in (Anthropic wire format)",
        "anthropic",
        "standin-chat",
        200_000,
        32_768,
        "1.00",
        "2.00",
        cache_read_price_per_mtok=Decimal("0.10"),
        cache_write_price_per_mtok=Decimal("1.25"),
        is_standin=True,
    ),
    # Embedding models (/v1/embeddings): priced per input token; they write no text, but the
    # catalog's output limit must be positive.
    _m(
        "text-embedding-3-small",
        "text-embedding-3-small",
        "openai",
        "text-embedding-3-small",
        8_192,
        1,
        "0.02",
        "0",
        kind="embedding",
    ),
    _m(
        "text-embedding-3-large",
        "text-embedding-3-large",
        "openai",
        "text-embedding-3-large",
        8_192,
        1,
        "0.13",
        "0",
        kind="embedding",
    ),
    _m(
        "standin-embed",
        "Local stand-in embeddings (OpenAI wire format)",
        "openai",
        "standin-embed",
        8_192,
        1,
        "0.02",
        "0",
        kind="embedding",
        is_standin=True,
    ),
]

# The stand-in's fault directives as catalog models, so /v1/ failure handling can be tried end
# to end on a local install: ``seed_models --standin-faults`` (scripts/run passes it when it
# starts the stand-in) adds e.g. ``standin-gpt-429`` and ``standin-claude-drop``, whose
# provider model is ``standin-429`` (see llm/standin/behaviour.py for each directive).
STANDIN_DIRECTIVES = {
    "429": "answers 429 with Retry-After",
    "500": "answers 500",
    "529": "answers 529 (overloaded)",
    "400": "answers 400",
    "401": "answers 401 (bad key)",
    "drop": "drops the connection mid-reply",
    "errorevent": "sends an error event mid-stream",
    "hang": "never answers (until the timeout)",
    "flaky": "fails each new prompt once with 429, then answers",
    "slow": "20 tokens per second after 200 ms",
    "chaos20": "one request in five gets a random fault",
}
STANDIN_FAULT_CATALOG = [
    _m(
        f"standin-{family}-{directive}",
        f"Stand-in fault: {what} ({label} wire format)",
        provider,
        f"standin-{directive}",
        200_000,
        32_768,
        "1.00",
        "2.00",
        is_standin=True,
    )
    for family, provider, label in (
        ("gpt", "openai", "OpenAI"),
        ("claude", "anthropic", "Anthropic"),
    )
    for directive, what in STANDIN_DIRECTIVES.items()
]
