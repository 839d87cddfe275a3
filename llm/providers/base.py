"""The provider interface every caller uses, and the one place errors are classified.

Retries: the SDKs' own retries are switched off (``max_retries=0``). The job layer retries
instead, with exponential backoff that honours ``Retry-After``, and records every attempt; two
layers retrying would multiply attempts and hide them. Every call has a timeout.
"""

import email.utils
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from llm.providers.canonical import (  # noqa: F401 (the call model, re-exported)
    ChatMessage,
    ChatRequest,
    CompletionResult,
    StreamEvent,
)


class ProviderError(Exception):
    """A failed provider call. ``transient`` says whether trying again may succeed;
    ``retry_after`` is the server's advice in seconds, when it gave one. The message never
    contains credentials."""

    transient: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    transient = True


class PermanentProviderError(ProviderError):
    transient = False


class ProviderTimeout(TransientProviderError):
    """The provider did not answer, or stopped sending, within the timeout."""


DeltaCallback = Callable[[str], None]
EventCallback = Callable[[StreamEvent], None]


class ChatProvider(Protocol):
    def complete(
        self,
        request: ChatRequest,
        on_delta: DeltaCallback | None = None,
        on_event: EventCallback | None = None,
    ) -> CompletionResult:
        """Stream a reply: call ``on_delta`` with each text delta and ``on_event`` with each
        other stream event (tool-call starts and argument fragments...) as it arrives (an
        exception raised by either aborts the call and closes the stream), then return the
        whole result. Raises ``ProviderError`` for every provider failure."""
        ...


class AsyncChatProvider(Protocol):
    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield each text delta (a ``str``) and tool-call event as it arrives, then the whole
        ``CompletionResult`` last.
        Closing the iterator early closes the provider's stream. Raises ``ProviderError``."""
        ...


TRANSIENT_STATUSES = {408, 409, 429, 529}


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def error_for_status(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    error_class = TransientProviderError if is_transient_status(status) else PermanentProviderError
    return error_class(
        f"Provider answered {status}: {message}",
        status_code=status,
        retry_after=parse_retry_after(headers),
    )


def connection_error(response_id: str | None) -> TransientProviderError:
    """A transport failure: refused before anything arrived, or cut once the stream began."""
    if response_id:
        return TransientProviderError("The connection to the provider dropped mid-stream.")
    return TransientProviderError("Could not connect to the provider.")


def normalise_finish_reason(reason: str | None) -> str:
    return {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }.get(reason or "", reason or "")
