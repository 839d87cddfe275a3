"""Provider instances by name. SDK clients are cached per configuration so their connection
pools are reused across completions: sync clients per process (they are thread-safe), async
clients per event loop (an async connection pool belongs to the loop that opened it)."""

import asyncio
import threading
import weakref

import anthropic
import openai

from llm.providers import anthropic_messages, openai_chat
from llm.providers.anthropic_messages import AnthropicMessagesProvider
from llm.providers.base import AsyncChatProvider, ChatProvider, ChatRequest
from llm.providers.openai_chat import OpenAIChatProvider
from llm.providers.streaming import StreamingChatProvider

PROVIDERS = ("openai", "anthropic", "openai_compatible")
CONNECT_TIMEOUT = 5.0

_lock = threading.Lock()
_cache: dict[tuple, StreamingChatProvider] = {}
_async_cache: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = (
    weakref.WeakKeyDictionary()
)


def _build(
    provider: str, api_key: str, base_url: str | None, timeout: float, *, is_async: bool
) -> StreamingChatProvider:
    # read= bounds every wait for the next bytes, so a hung server fails within `timeout`.
    connect = min(CONNECT_TIMEOUT, timeout)
    if provider in ("openai", "openai_compatible"):
        client_class = openai.AsyncOpenAI if is_async else openai.OpenAI
        client = client_class(
            api_key=api_key,
            base_url=base_url,
            timeout=openai.Timeout(timeout, connect=connect),
            max_retries=0,
        )
        return OpenAIChatProvider(client)
    if provider == "anthropic":
        client_class = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        client = client_class(
            api_key=api_key,
            base_url=base_url,
            timeout=anthropic.Timeout(timeout, connect=connect),
            max_retries=0,
        )
        return AnthropicMessagesProvider(client)
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
            instance = _cache[key] = _build(provider, api_key, base_url, timeout, is_async=False)
        return instance


def get_async_provider(
    provider: str, *, api_key: str, base_url: str | None = None, timeout: float = 60.0
) -> AsyncChatProvider:
    """Like ``get_provider``, with the SDK's async client, for code running in an event loop
    (the compatible API's async views). Call it from inside the loop that will use it."""
    loop = asyncio.get_running_loop()
    key = (provider, api_key, base_url, timeout)
    with _lock:
        per_loop = _async_cache.setdefault(loop, {})
        instance = per_loop.get(key)
        if instance is None:
            instance = per_loop[key] = _build(provider, api_key, base_url, timeout, is_async=True)
        return instance


REQUEST_BODY = {
    "openai": openai_chat.request_body,
    "openai_compatible": openai_chat.request_body,
    "anthropic": anthropic_messages.request_body,
}


def request_check(provider: str, request: ChatRequest) -> None:
    """Raise ``UnsupportedFeature`` (naming the client's field) when ``request`` asks for
    something ``provider``'s wire format cannot carry; a pure check, before any call."""
    REQUEST_BODY[provider](request)
