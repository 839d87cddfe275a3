"""Anthropic Messages through the official SDK: what differs from the shared skeleton
(``streaming.py``). The system prompt goes in ``system``; errors can also arrive as an
``error`` event after the stream has answered 200."""

import json

import anthropic

from llm.providers.base import (
    ChatRequest,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    error_for_status,
)
from llm.providers.streaming import ReplyAccumulator, SdkClasses, StreamingChatProvider

# Error types Anthropic may send inside a stream that has already answered 200.
TRANSIENT_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def _error_type_and_message(body: object, fallback: str) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("type"), str(error.get("message") or fallback)
    return None, fallback


class AnthropicMessagesProvider(StreamingChatProvider):
    name = "anthropic"
    path = "/v1/messages"
    sdk = SdkClasses(
        status_error=anthropic.APIStatusError,
        timeout_error=anthropic.APITimeoutError,
        connection_error=anthropic.APIConnectionError,
        api_error=anthropic.APIError,
        stream=anthropic.Stream,
        async_stream=anthropic.AsyncStream,
    )

    def build_body(self, request: ChatRequest) -> dict:
        body: dict = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0-1
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    def read_event(self, event: dict, reply: ReplyAccumulator) -> str | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return reply.text(delta["text"])
            if delta.get("type") == "input_json_delta":
                block = reply.tool_calls.get(event.get("index", 0))
                if block is not None:
                    block["_json"] = block.get("_json", "") + delta.get("partial_json", "")
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                reply.tool_calls[event.get("index", 0)] = dict(block)
        elif kind == "content_block_stop":
            block = reply.tool_calls.get(event.get("index", 0))
            if block is not None and "_json" in block:
                raw = block.pop("_json")
                block["input"] = json.loads(raw) if raw else {}
        elif kind == "message_start":
            message = event.get("message") or {}
            reply.response_id = message.get("id", "")
            reply.response_model = message.get("model", "")
            usage = message.get("usage") or {}
            reply.input_tokens = usage.get("input_tokens") or 0
            reply.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            reply.finish_reason = delta.get("stop_reason") or reply.finish_reason
            reply.stop_sequence = delta.get("stop_sequence") or reply.stop_sequence
            reply.output_tokens = (event.get("usage") or {}).get(
                "output_tokens"
            ) or reply.output_tokens
        elif kind == "message_stop":
            reply.finished = True
        return None

    def read_response(self, body: dict, reply: ReplyAccumulator) -> None:
        reply.response_id = body.get("id", "")
        reply.response_model = body.get("model", "")
        usage = body.get("usage") or {}
        reply.input_tokens = usage.get("input_tokens") or 0
        reply.output_tokens = usage.get("output_tokens") or 0
        for index, block in enumerate(body.get("content") or ()):
            if block.get("type") == "text":
                reply.text(block.get("text", ""))
            elif block.get("type") == "tool_use":
                reply.tool_calls[index] = block
        reply.finish_reason = body.get("stop_reason")
        reply.stop_sequence = body.get("stop_sequence")
        reply.finished = body.get("type") == "message"

    def status_error(self, exc: anthropic.APIStatusError) -> ProviderError:
        kind, message = _error_type_and_message(exc.body, exc.message)
        if exc.status_code == 200:  # an `error` event after the stream had started
            error_class = (
                TransientProviderError
                if kind in TRANSIENT_STREAM_ERRORS
                else PermanentProviderError
            )
            return error_class(f"The provider failed mid-stream ({kind}): {message}")
        return error_for_status(exc.status_code, message, exc.response.headers)


__all__ = ["AnthropicMessagesProvider"]
