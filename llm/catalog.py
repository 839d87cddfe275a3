"""How a catalog entry resolves to a callable provider (its key, its base URL) at the moment
it is used: the one place that decides whether a model can be called now (the client itself is
built by ``llm.lifecycle.provider_for``). The seed data lives in ``llm/seed_catalog.py``."""

import os
from dataclasses import dataclass

from django.conf import settings

from llm.models import LLMModel, Provider

DEFAULT_KEY_ENV = {
    Provider.OPENAI: "OPENAI_API_KEY",
    Provider.ANTHROPIC: "ANTHROPIC_API_KEY",
    Provider.OPENAI_COMPATIBLE: "",
}
# Any non-empty key satisfies the stand-in; it only checks that one is sent.
STANDIN_API_KEY = "standin-local-key"


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


def model_is_callable(model: LLMModel) -> bool:
    """Whether ``model`` is enabled and its provider can be reached now (a key, a stand-in)."""
    return model.enabled and provider_target(model) is not None
