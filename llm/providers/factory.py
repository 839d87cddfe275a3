"""Provider instances by name. SDK clients are cached per configuration so their connection
pools are reused across completions; the clients are thread-safe."""

import threading

import anthropic
import openai

from llm.providers.anthropic_messages import AnthropicMessagesProvider
from llm.providers.base import ChatProvider
from llm.providers.openai_chat import OpenAIChatProvider

PROVIDERS = ("openai", "anthropic", "openai_compatible")
CONNECT_TIMEOUT = 5.0

_lock = threading.Lock()
_cache: dict[tuple, ChatProvider] = {}


def _build(provider: str, api_key: str, base_url: str | None, timeout: float) -> ChatProvider:
    # read= bounds every wait for the next bytes, so a hung server fails within `timeout`.
    limits = {
        "timeout": openai.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
        "max_retries": 0,
    }
    if provider in ("openai", "openai_compatible"):
        return OpenAIChatProvider(openai.OpenAI(api_key=api_key, base_url=base_url, **limits))
    if provider == "anthropic":
        limits["timeout"] = anthropic.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        return AnthropicMessagesProvider(
            anthropic.Anthropic(api_key=api_key, base_url=base_url, **limits)
        )
    raise ValueError(f"Unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}.")


def get_provider(
    provider: str, *, api_key: str, base_url: str | None = None, timeout: float = 60.0
) -> ChatProvider:
    """The provider for ``provider`` ("openai", "anthropic" or "openai_compatible"), talking to
    ``base_url`` (None: the provider's own API) with ``api_key``. SDK retries are off."""
    key = (provider, api_key, base_url, timeout)
    with _lock:
        instance = _cache.get(key)
        if instance is None:
            instance = _cache[key] = _build(provider, api_key, base_url, timeout)
        return instance
