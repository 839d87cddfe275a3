"""The only package that imports vendor SDKs. Everything else uses this interface."""

from llm.providers.base import (
    AsyncChatProvider,
    ChatMessage,
    ChatProvider,
    ChatRequest,
    CompletionResult,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    TransientProviderError,
)
from llm.providers.canonical import UnsupportedFeature
from llm.providers.context import estimate_tokens, trim_messages
from llm.providers.factory import PROVIDERS, get_async_provider, get_provider, request_check
from llm.providers.pricing import completion_cost_micros

__all__ = [
    "PROVIDERS",
    "AsyncChatProvider",
    "ChatMessage",
    "ChatProvider",
    "ChatRequest",
    "CompletionResult",
    "PermanentProviderError",
    "ProviderError",
    "ProviderTimeout",
    "TransientProviderError",
    "UnsupportedFeature",
    "completion_cost_micros",
    "estimate_tokens",
    "get_async_provider",
    "get_provider",
    "request_check",
    "trim_messages",
]
