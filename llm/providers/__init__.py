"""The only package that imports vendor SDKs. Everything else uses this interface."""

from llm.providers.base import (
    ChatMessage,
    ChatProvider,
    ChatRequest,
    CompletionResult,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from llm.providers.context import estimate_tokens, trim_messages
from llm.providers.factory import PROVIDERS, get_provider
from llm.providers.pricing import completion_cost

__all__ = [
    "PROVIDERS",
    "ChatMessage",
    "ChatProvider",
    "ChatRequest",
    "CompletionResult",
    "PermanentProviderError",
    "ProviderError",
    "TransientProviderError",
    "completion_cost",
    "estimate_tokens",
    "get_provider",
    "trim_messages",
]
