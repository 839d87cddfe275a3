"""Fitting a conversation into a model's context window, without a tokenizer.

Token counts are estimated conservatively: one token per 3 bytes of UTF-8 (real tokenizers
average about 4 characters per token for English, fewer bytes per token only for unusual
text) plus a fixed overhead per message for role markers. Over-estimating only trims a little
early; under-estimating would make the provider reject the request."""

import math

from llm.providers.base import ChatMessage, PermanentProviderError
from llm.providers.canonical import ImagePart, ToolResultPart

PER_MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3


def estimate_tokens(text: str) -> int:
    """A conservative (high) estimate of ``text``'s token count."""
    return math.ceil(len(text.encode("utf-8")) / 3)


# An image's prompt tokens before the provider has seen it: about what a 1,000-pixel image costs
# at Anthropic (width x height / 750) and OpenAI (high detail); only the estimate uses it.
IMAGE_TOKENS = 1_600


def estimate_message_tokens(message: ChatMessage) -> int:
    images = sum(
        1 if isinstance(part, ImagePart) else len(part.images)
        for part in message.parts
        if isinstance(part, (ImagePart, ToolResultPart))
    )
    return estimate_tokens(message.text) + PER_MESSAGE_OVERHEAD + images * IMAGE_TOKENS


def trim_messages(
    *, system: str, messages: list[ChatMessage], context_window: int, max_tokens: int
) -> list[ChatMessage]:
    """The newest messages that fit in ``context_window - max_tokens`` beside the system prompt.

    Always keeps the last message and never starts with an assistant message (Anthropic needs
    the user first). Raises ``PermanentProviderError`` when even the system prompt and the
    last message cannot fit."""
    budget = context_window - max_tokens - REPLY_PRIMING
    if system:
        budget -= estimate_tokens(system) + PER_MESSAGE_OVERHEAD
    kept: list[ChatMessage] = []
    for message in reversed(messages):
        cost = estimate_message_tokens(message)
        if cost > budget:
            break
        kept.append(message)
        budget -= cost
    if messages and not kept:
        raise PermanentProviderError(
            "The conversation is too long for the model's context window: the system prompt and "
            "the latest message alone need more than the window minus the reply's max_tokens."
        )
    kept.reverse()
    # Nor with tool results whose calls were trimmed away (providers refuse an orphan result).
    while len(kept) > 1 and (kept[0].role == "assistant" or _answers_a_tool_call(kept[0])):
        kept.pop(0)
    return kept


def _answers_a_tool_call(message: ChatMessage) -> bool:
    return any(isinstance(part, ToolResultPart) for part in message.parts)
