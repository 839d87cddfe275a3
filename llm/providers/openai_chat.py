"""OpenAI Chat Completions (and any OpenAI-compatible server) through the official SDK: what
differs from the shared skeleton (``streaming.py``)."""

import openai

from llm.providers.base import ChatRequest, ProviderError, error_for_status
from llm.providers.streaming import ReplyAccumulator, SdkClasses, StreamingChatProvider


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message


class OpenAIChatProvider(StreamingChatProvider):
    """Streams Chat Completions, asking for usage in the last chunk (``include_usage``)."""

    name = "openai"
    path = "/chat/completions"
    sdk = SdkClasses(
        status_error=openai.APIStatusError,
        timeout_error=openai.APITimeoutError,
        connection_error=openai.APIConnectionError,
        api_error=openai.APIError,
        stream=openai.Stream,
        async_stream=openai.AsyncStream,
    )

    def build_body(self, request: ChatRequest) -> dict:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    def read_event(self, event: dict, reply: ReplyAccumulator) -> str | None:
        if not reply.response_id:
            reply.response_id = event.get("id") or ""
            reply.response_model = event.get("model") or ""
        if usage := event.get("usage"):
            reply.input_tokens = usage.get("prompt_tokens")
            reply.output_tokens = usage.get("completion_tokens")
        text = None
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            if piece := delta.get("content"):
                text = reply.text(piece) if text is None else text + reply.text(piece)
            for call in delta.get("tool_calls") or ():
                _merge_tool_call(reply.tool_calls, call)
            if reason := choice.get("finish_reason"):
                reply.finish_reason = reason
                reply.finished = True
        return text

    def read_response(self, body: dict, reply: ReplyAccumulator) -> None:
        reply.response_id = body.get("id") or ""
        reply.response_model = body.get("model") or ""
        if usage := body.get("usage"):
            reply.input_tokens = usage.get("prompt_tokens")
            reply.output_tokens = usage.get("completion_tokens")
        for choice in (body.get("choices") or ())[:1]:
            message = choice.get("message") or {}
            if message.get("content"):
                reply.text(message["content"])
            for index, call in enumerate(message.get("tool_calls") or ()):
                reply.tool_calls[index] = call
            reply.finish_reason = choice.get("finish_reason") or "stop"
            reply.finished = True

    def status_error(self, exc: openai.APIStatusError) -> ProviderError:
        return error_for_status(exc.status_code, _status_message(exc), exc.response.headers)


def _merge_tool_call(calls: dict[int, dict], fragment: dict) -> None:
    """Tool calls stream as fragments by index: the first has id and name, later ones append
    to the arguments string."""
    call = calls.setdefault(
        fragment.get("index", len(calls)),
        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
    )
    call["id"] = fragment.get("id") or call["id"]
    function = fragment.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


__all__ = ["OpenAIChatProvider"]
