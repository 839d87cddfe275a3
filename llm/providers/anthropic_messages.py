"""Anthropic Messages through the official SDK. The system prompt goes in ``system``."""

import time

import anthropic
import httpx2

from llm.providers.base import (
    ChatRequest,
    CompletionResult,
    DeltaCallback,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    connection_error,
    error_for_status,
    normalise_finish_reason,
)

# Error types Anthropic may send inside a stream that has already answered 200.
TRANSIENT_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def _error_type_and_message(body: object, fallback: str) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("type"), str(error.get("message") or fallback)
    return None, fallback


class AnthropicMessagesProvider:
    name = "anthropic"

    def __init__(self, client: anthropic.Anthropic) -> None:
        self._client = client

    def complete(
        self, request: ChatRequest, on_delta: DeltaCallback | None = None
    ) -> CompletionResult:
        options: dict = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
        }
        if request.system:
            options["system"] = request.system
        if request.temperature is not None:
            options["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0-1

        started = time.perf_counter()
        first_token_at: float | None = None
        parts: list[str] = []
        response_id = ""
        stop_reason = None
        input_tokens = output_tokens = 0
        stopped = False
        try:
            # The SDK's own request, SSE decoding and error events, but events as plain dicts:
            # a pydantic model per token is most of the layer's cost (bench/README.md).
            stream = self._client.post(
                "/v1/messages",
                body=options,
                cast_to=object,
                stream=True,
                stream_cls=anthropic.Stream[object],
            )
            with stream:
                for event in stream:
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        if delta.get("type") == "text_delta":
                            if first_token_at is None:
                                first_token_at = time.perf_counter()
                            parts.append(delta["text"])
                            if on_delta is not None:
                                on_delta(delta["text"])
                    elif kind == "message_start":
                        message = event.get("message") or {}
                        response_id = message.get("id", "")
                        usage = message.get("usage") or {}
                        input_tokens = usage.get("input_tokens") or 0
                        output_tokens = usage.get("output_tokens") or 0
                    elif kind == "message_delta":
                        stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                        output_tokens = (event.get("usage") or {}).get(
                            "output_tokens"
                        ) or output_tokens
                    elif kind == "message_stop":
                        stopped = True
        except anthropic.APIStatusError as exc:
            if exc.status_code == 200:  # an `error` event after the stream had started
                kind, message = _error_type_and_message(exc.body, exc.message)
                error_class = (
                    TransientProviderError
                    if kind in TRANSIENT_STREAM_ERRORS
                    else PermanentProviderError
                )
                raise error_class(f"The provider failed mid-stream ({kind}): {message}") from None
            _, message = _error_type_and_message(exc.body, exc.message)
            raise error_for_status(exc.status_code, message, exc.response.headers) from None
        except anthropic.APITimeoutError:
            raise TransientProviderError("The provider did not answer in time.") from None
        except anthropic.APIConnectionError:
            raise connection_error(response_id) from None
        except httpx2.TimeoutException:
            raise TransientProviderError("The provider stopped sending in time.") from None
        except httpx2.TransportError:
            raise connection_error(response_id) from None

        if not stopped:
            raise TransientProviderError("The provider's stream ended before the reply finished.")
        finished = time.perf_counter()
        return CompletionResult(
            text="".join(parts),
            finish_reason=normalise_finish_reason(stop_reason),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            response_id=response_id,
            time_to_first_token_ms=round((first_token_at - started) * 1000)
            if first_token_at
            else None,
            latency_ms=round((finished - started) * 1000),
        )


__all__ = ["AnthropicMessagesProvider", "ProviderError"]
