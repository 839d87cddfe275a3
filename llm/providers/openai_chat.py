"""OpenAI Chat Completions (and any OpenAI-compatible server) through the official SDK: the
pure translation of the canonical call model to and from its wire format, and what differs
from the shared skeleton (``streaming.py``)."""

import openai

from llm.providers.base import ChatRequest, ProviderError, error_for_status
from llm.providers.canonical import (
    ChatMessage,
    ImagePart,
    LogprobsDelta,
    TextPart,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    UnsupportedFeature,
)
from llm.providers.streaming import ReplyAccumulator, SdkClasses, StreamingChatProvider

# Anthropic's thinking budget as OpenAI's reasoning effort.
EFFORT_FOR_BUDGET = ((2048, "low"), (8192, "medium"))


def _image(part: ImagePart) -> dict:
    image: dict = {"url": part.data_url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _user_content(parts: list) -> str | list:
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts)
    return [
        {"type": "text", "text": p.text} if isinstance(p, TextPart) else _image(p) for p in parts
    ]


def _tool_result_content(part: ToolResultPart) -> str | list:
    if not part.images:
        return part.content
    return [{"type": "text", "text": part.content}, *(_image(i) for i in part.images)]


def messages_out(message: ChatMessage) -> list[dict]:
    """One canonical message as Chat Completions messages: tool results become ``tool``
    messages (first, as they answer the previous assistant turn), the rest one message."""
    if not message.parts:
        return [{"role": message.role, "content": message.content}]
    out: list[dict] = []
    rest: list = []
    calls: list[dict] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": part.tool_call_id,
                    "content": _tool_result_content(part),
                }
            )
        elif isinstance(part, ThinkingPart):
            continue  # Anthropic's signed thinking means nothing to an OpenAI model
        elif isinstance(part, ToolCallPart):
            calls.append(
                {
                    "id": part.id,
                    "type": "function",
                    "function": {"name": part.name, "arguments": part.arguments or "{}"},
                }
            )
        else:
            rest.append(part)
    if message.role == "assistant":
        text = "".join(p.text for p in rest if isinstance(p, TextPart))
        assistant: dict = {"role": "assistant", "content": text or None}
        if calls:
            assistant["tool_calls"] = calls
        out.append(assistant)
    elif rest:
        out.append({"role": "user", "content": _user_content(rest)})
    return out


def request_body(request: ChatRequest) -> dict:
    """The Chat Completions body for ``request`` (streamed, with usage in the last chunk).
    Raises ``UnsupportedFeature`` for what OpenAI has no field for."""
    if request.top_k is not None:
        raise UnsupportedFeature(
            request.param("top_k"), "OpenAI models take no top_k; use top_p instead."
        )
    messages = [{"role": "system", "content": request.system}] if request.system else []
    for message in request.messages:
        messages += messages_out(message)
    body: dict = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream_options": {"include_usage": True},
    }
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "seed": request.seed,
        "stop": list(request.stop) or None,
        "n": request.n if request.n != 1 else None,
        "logprobs": True if request.logprobs else None,
        "top_logprobs": request.top_logprobs if request.logprobs else None,
        "reasoning_effort": request.reasoning_effort,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.thinking_budget and not request.reasoning_effort:
        body["reasoning_effort"] = next(
            (effort for limit, effort in EFFORT_FOR_BUDGET if request.thinking_budget <= limit),
            "high",
        )
    if "reasoning_effort" in body:  # reasoning models take only max_completion_tokens
        body["max_completion_tokens"] = body.pop("max_tokens")
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": dict(tool.parameters),
                    **({"strict": tool.strict} if tool.strict is not None else {}),
                },
            }
            for tool in request.tools
        ]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if (choice := request.tool_choice) is not None and request.tools:
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    if (fmt := request.response_format) is not None:
        if fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            schema: dict = {"name": fmt.name, "schema": dict(fmt.schema or {"type": "object"})}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            if fmt.description:
                schema["description"] = fmt.description
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body


def _read_usage(usage: dict, reply: ReplyAccumulator) -> None:
    reply.input_tokens = usage.get("prompt_tokens")
    reply.output_tokens = usage.get("completion_tokens")
    reply.cache_read_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    details = usage.get("completion_tokens_details") or {}
    reply.reasoning_tokens = details.get("reasoning_tokens") or 0


def _stop_sequence(request: ChatRequest | None, finish_reason: str | None) -> str | None:
    """OpenAI ends a reply at a stop sequence with ``stop`` and does not say which: with one
    stop sequence it can only be that one (a natural end reads the same, OpenAI cannot tell
    them apart for us)."""
    if request is not None and finish_reason == "stop" and len(request.stop) == 1:
        return request.stop[0]
    return None


def read_event(event: dict, reply: ReplyAccumulator) -> str | None:
    """Apply one ``chat.completion.chunk`` to ``reply``: return its text; tool-call fragments
    and logprobs are queued on ``reply.events`` (choice 0 only: a stream is one choice)."""
    if not reply.response_id:
        reply.response_id = event.get("id") or ""
        reply.response_model = event.get("model") or ""
    if usage := event.get("usage"):
        _read_usage(usage, reply)
    text = None
    for choice in event.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if piece := delta.get("content"):
            text = reply.text(piece) if text is None else text + reply.text(piece)
        for fragment in delta.get("tool_calls") or ():
            _merge_tool_call(reply, fragment)
        if (logprobs := choice.get("logprobs")) and logprobs.get("content"):
            reply.logprobs.extend(logprobs["content"])
            reply.events.append(LogprobsDelta(tuple(logprobs["content"])))
        if reason := choice.get("finish_reason"):
            reply.finish_reason = reason
            reply.stop_sequence = _stop_sequence(reply.request, reason)
            reply.finished = True
    return text


def read_response(body: dict, reply: ReplyAccumulator) -> None:
    """Apply a whole ``chat.completion`` to ``reply`` (choices after the first as
    ``more_choices``)."""
    reply.response_id = body.get("id") or ""
    reply.response_model = body.get("model") or ""
    if usage := body.get("usage"):
        _read_usage(usage, reply)
    for position, choice in enumerate(body.get("choices") or ()):
        message = choice.get("message") or {}
        calls = [
            (call.get("id") or "", (call.get("function") or {}))
            for call in message.get("tool_calls") or ()
        ]
        finish = choice.get("finish_reason") or "stop"
        logprobs = choice.get("logprobs")
        if position:
            reply.more_choices.append(
                {
                    "text": message.get("content") or "",
                    "finish_reason": finish,
                    "tool_calls": [
                        (i, f.get("name", ""), f.get("arguments", "")) for i, f in calls
                    ],
                    "logprobs": logprobs,
                }
            )
            continue
        if message.get("content"):
            reply.text(message["content"])
        for index, (call_id, function) in enumerate(calls):
            reply.tool_calls[index] = {
                "id": call_id,
                "name": function.get("name") or "",
                "arguments": function.get("arguments") or "",
            }
        if logprobs and logprobs.get("content"):
            reply.logprobs.extend(logprobs["content"])
        reply.finish_reason = finish
        reply.stop_sequence = _stop_sequence(reply.request, finish)
        reply.finished = True


def _merge_tool_call(reply: ReplyAccumulator, fragment: dict) -> None:
    """Tool calls stream as fragments by index: the first has id and name, later ones append
    to the arguments string. Each becomes a ToolCallStart / ToolCallDelta event."""
    index = fragment.get("index", len(reply.tool_calls))
    function = fragment.get("function") or {}
    call = reply.tool_calls.get(index)
    if call is None:
        call = reply.tool_calls[index] = {
            "id": fragment.get("id") or "",
            "name": function.get("name") or "",
            "arguments": "",
        }
        reply.first_output()
        reply.events.append(ToolCallStart(index=index, id=call["id"], name=call["name"]))
    if arguments := function.get("arguments"):
        call["arguments"] += arguments
        reply.events.append(ToolCallDelta(index=index, arguments=arguments))


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
        return request_body(request)

    def read_event(self, event: dict, reply: ReplyAccumulator) -> str | None:
        return read_event(event, reply)

    def read_response(self, body: dict, reply: ReplyAccumulator) -> None:
        read_response(body, reply)

    def status_error(self, exc: openai.APIStatusError) -> ProviderError:
        return error_for_status(exc.status_code, _status_message(exc), exc.response.headers)


__all__ = ["OpenAIChatProvider", "read_event", "read_response", "request_body"]
