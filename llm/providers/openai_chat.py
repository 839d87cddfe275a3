"""OpenAI Chat Completions (and any OpenAI-compatible server) through the official SDK."""

import time

import httpx2
import openai

from llm.providers.base import (
    ChatRequest,
    CompletionResult,
    DeltaCallback,
    ProviderError,
    TransientProviderError,
    connection_error,
    error_for_status,
    normalise_finish_reason,
)
from llm.providers.context import estimate_message_tokens, estimate_tokens


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message


class OpenAIChatProvider:
    """Streams Chat Completions, asking for usage in the last chunk (``include_usage``)."""

    name = "openai"

    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    def complete(
        self, request: ChatRequest, on_delta: DeltaCallback | None = None
    ) -> CompletionResult:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        options: dict = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            options["temperature"] = request.temperature

        started = time.perf_counter()
        first_token_at: float | None = None
        parts: list[str] = []
        finish_reason = response_id = None
        usage = None
        try:
            # The SDK's own request, SSE decoding and error handling, but chunks as plain
            # dicts: building a pydantic model per token cost ~0.25 ms (bench/README.md).
            stream = self._client.post(
                "/chat/completions",
                body=options,
                cast_to=object,
                stream=True,
                stream_cls=openai.Stream[object],
            )
            with stream:
                for chunk in stream:
                    response_id = response_id or chunk.get("id")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if first_token_at is None:
                                first_token_at = time.perf_counter()
                            parts.append(text)
                            if on_delta is not None:
                                on_delta(text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
        except openai.APIStatusError as exc:
            raise error_for_status(
                exc.status_code, _status_message(exc), exc.response.headers
            ) from None
        except openai.APITimeoutError:
            raise TransientProviderError("The provider did not answer in time.") from None
        except openai.APIConnectionError:
            raise connection_error(response_id) from None
        except openai.APIError as exc:  # an error object inside the stream
            raise TransientProviderError(f"The provider failed mid-stream: {exc.message}") from None
        except httpx2.TimeoutException:
            raise TransientProviderError("The provider stopped sending in time.") from None
        except httpx2.TransportError:
            raise connection_error(response_id) from None

        if finish_reason is None:
            raise TransientProviderError("The provider's stream ended before the reply finished.")
        text = "".join(parts)
        finished = time.perf_counter()
        if usage is not None:
            input_tokens, output_tokens = usage["prompt_tokens"], usage["completion_tokens"]
        else:  # some compatible servers ignore include_usage; estimate rather than record 0
            input_tokens = sum(estimate_message_tokens(m) for m in request.messages)
            input_tokens += estimate_tokens(request.system) if request.system else 0
            output_tokens = estimate_tokens(text)
        return CompletionResult(
            text=text,
            finish_reason=normalise_finish_reason(finish_reason),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            response_id=response_id or "",
            time_to_first_token_ms=round((first_token_at - started) * 1000)
            if first_token_at
            else None,
            latency_ms=round((finished - started) * 1000),
        )


__all__ = ["OpenAIChatProvider", "ProviderError"]
