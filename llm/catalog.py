"""The default model catalog loaded by ``manage.py seed_models``, and how a catalog entry
resolves to a callable provider (its key, its base URL) at the moment it is used.

Prices are USD per million tokens from the providers' public price lists; staff correct them
in the admin when providers change them (``seed_models`` never overwrites an edited row unless
``--update`` is given)."""

import os
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from llm.models import LLMModel, Provider

DEFAULT_KEY_ENV = {
    Provider.OPENAI: "OPENAI_API_KEY",
    Provider.ANTHROPIC: "ANTHROPIC_API_KEY",
    Provider.OPENAI_COMPATIBLE: "",
}
# Any non-empty key satisfies the stand-in; it only checks that one is sent.
STANDIN_API_KEY = "standin-local-key"


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


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """Where and how to call a catalog entry. ``api_key`` is secret: never log or return it."""

    provider: str
    model: str
    api_key: str
    base_url: str | None

    def __repr__(self) -> str:  # keep the key out of tracebacks and debug output
        return f"ProviderTarget(provider={self.provider!r}, model={self.model!r}, base_url={self.base_url!r})"


def standin_base_url(provider: str) -> str | None:
    base = settings.STANDIN_BASE_URL.rstrip("/")
    if not base:
        return None
    return f"{base}/v1" if provider != Provider.ANTHROPIC else base


def provider_target(model: LLMModel) -> ProviderTarget | None:
    """How to call ``model`` now, or None when it cannot be called (no key, no stand-in)."""
    if model.is_standin:
        base_url = standin_base_url(model.provider)
        if base_url is None:
            return None
        return ProviderTarget(model.provider, model.provider_model, STANDIN_API_KEY, base_url)
    key_env = model.api_key_env or DEFAULT_KEY_ENV[Provider(model.provider)]
    api_key = os.environ.get(key_env, "") if key_env else ""
    if model.provider == Provider.OPENAI_COMPATIBLE:
        # Local servers such as Ollama accept any key; the SDK insists on one.
        return ProviderTarget(
            model.provider, model.provider_model, api_key or "none", model.base_url
        )
    if not api_key:
        return None
    return ProviderTarget(model.provider, model.provider_model, api_key, model.base_url or None)


def unavailable_reason(model: LLMModel) -> str:
    if not model.enabled:
        return f"Model '{model.slug}' is disabled."
    if model.is_standin:
        return f"Model '{model.slug}' is a local stand-in and no stand-in provider is configured."
    key_env = model.api_key_env or DEFAULT_KEY_ENV[Provider(model.provider)]
    return f"Model '{model.slug}' cannot be called: {key_env} is not configured on the server."
