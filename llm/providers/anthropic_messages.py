"""Anthropic Messages through the official SDK: the pure translation of the canonical call
model to and from its wire format, and what differs from the shared skeleton
(``streaming.py``). The system prompt goes in ``system``; errors can also arrive as an
``error`` event after the stream has answered 200.

Structured output (``response_format``) becomes a tool the model is made to call, whose input
schema is the requested schema; its input is handed back as the reply's text, so the client
sees JSON text, as from OpenAI."""

import json

import anthropic

from llm.providers.base import (
    ChatRequest,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    error_for_status,
)
from llm.providers.canonical import (
    ChatMessage,
    ImagePart,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    UnsupportedFeature,
)
from llm.providers.streaming import ReplyAccumulator, SdkClasses, StreamingChatProvider

# Error types Anthropic may send inside a stream that has already answered 200.
TRANSIENT_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
CACHE = {"type": "ephemeral"}
# OpenAI's reasoning effort as a thinking budget (Anthropic's minimum is 1,024 tokens).
BUDGET_FOR_EFFORT = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
STRUCTURED_TOOL_DESCRIPTION = "Give your whole answer by calling this tool with it as input."


def _error_type_and_message(body: object, fallback: str) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("type"), str(error.get("message") or fallback)
    return None, fallback


def _cached(block: dict, cache: bool) -> dict:
    return {**block, "cache_control": CACHE} if cache else block


def _image(part: ImagePart) -> dict:
    if part.data:
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    else:
        source = {"type": "url", "url": part.url}
    return _cached({"type": "image", "source": source}, part.cache)


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _block(part) -> dict:
    if isinstance(part, ThinkingPart):
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted}
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, TextPart):
        return _cached({"type": "text", "text": part.text}, part.cache)
    if isinstance(part, ImagePart):
        return _image(part)
    if isinstance(part, ToolCallPart):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": _arguments(part.arguments),
        }
    content: str | list = part.content
    if part.images:
        content = [{"type": "text", "text": part.content}] if part.content else []
        content += [_image(image) for image in part.images]
    result = {"type": "tool_result", "tool_use_id": part.tool_call_id, "content": content}
    if part.is_error:
        result["is_error"] = True
    return _cached(result, part.cache)


def messages_out(messages: list[ChatMessage]) -> list[dict]:
    """Canonical messages as Anthropic's, consecutive turns of one role joined into one
    (Anthropic wants every tool result of a turn in the user message after it)."""
    out: list[dict] = []
    for message in messages:
        if message.parts:
            blocks = [_block(part) for part in message.parts]
            # Tool results first: they must open the user turn that answers the tool calls.
            blocks.sort(key=lambda block: block["type"] != "tool_result")
        else:
            blocks = [{"type": "text", "text": message.content}]
        if out and out[-1]["role"] == message.role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": message.role, "content": blocks})
    for message in out:  # the plain shape when a turn is one plain text
        content = message["content"]
        if len(content) == 1 and content[0].keys() == {"type", "text"}:
            message["content"] = content[0]["text"]
    return out


def _structured_tool(request: ChatRequest) -> dict | None:
    fmt = request.response_format
    if fmt is None:
        return None
    schema = dict(fmt.schema or {}) if fmt.type == "json_schema" else {}
    if schema.get("type") != "object":  # a tool's input is an object: wrap anything else
        schema = (
            {"type": "object", "additionalProperties": True}
            if not schema
            else {"type": "object", "properties": {"value": schema}, "required": ["value"]}
        )
    return {
        "name": fmt.name or "response",
        "description": fmt.description or STRUCTURED_TOOL_DESCRIPTION,
        "input_schema": schema,
    }


def _refuse(request: ChatRequest) -> None:
    if request.n != 1:
        raise UnsupportedFeature(
            request.param("n"), "Anthropic models give one reply per request: n must be 1."
        )
    if request.logprobs:
        raise UnsupportedFeature(
            request.param("logprobs"), "Anthropic models do not return log probabilities."
        )
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(request, name):
            raise UnsupportedFeature(
                request.param(name), f"Anthropic models have no {name}; only 0 is accepted."
            )


def _tools_called_earlier(messages: list[ChatMessage]) -> list[str]:
    """The names of the tools the history's assistant turns called, in order, once each."""
    names: dict[str, None] = {}
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                names[part.name] = None
    return list(names)


def request_body(request: ChatRequest) -> dict:
    """The Messages body for ``request``. Raises ``UnsupportedFeature`` for what Anthropic has
    no field for (``n`` > 1, ``logprobs``, non-zero penalties)."""
    _refuse(request)
    body: dict = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages_out(request.messages),
    }
    if request.system:
        body["system"] = (
            [{"type": "text", "text": request.system, "cache_control": CACHE}]
            if request.system_cache
            else request.system
        )
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0-1
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    tools = [
        _cached(
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": dict(tool.parameters),
            },
            tool.cache,
        )
        for tool in request.tools
    ]
    choice = request.tool_choice
    tool_choice: dict | None = None
    if not tools and (earlier := _tools_called_earlier(request.messages)):
        # Anthropic refuses tool turns in the history without tools defined (a conversation
        # continued without its tools, a client summarising an agent's run): the tools
        # called earlier are declared, and none may be called now.
        tools = [{"name": name, "input_schema": {"type": "object"}} for name in earlier]
        choice = ToolChoice(mode="none")
    if choice is not None and tools:
        kind = {"required": "any"}.get(choice.mode, choice.mode)
        tool_choice = {"type": kind, **({"name": choice.name} if kind == "tool" else {})}
    if structured := _structured_tool(request):
        tools.append(structured)
        if not request.tools or (choice is not None and choice.mode == "none"):
            tool_choice = {"type": "tool", "name": structured["name"]}
    if tools:
        body["tools"] = tools
    if request.parallel_tool_calls is False and tools:
        tool_choice = tool_choice or {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    budget = request.thinking_budget or BUDGET_FOR_EFFORT.get(request.reasoning_effort or "")
    if budget and budget < request.max_tokens and not structured:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body.pop("temperature", None)  # thinking takes no temperature
    return body


def _read_usage(usage: dict, reply: ReplyAccumulator) -> None:
    """Anthropic counts cached prompt tokens apart from ``input_tokens``; the canonical
    ``input_tokens`` is every prompt token."""
    if "input_tokens" in usage or reply.input_tokens is None:
        reply.cache_read_tokens = usage.get("cache_read_input_tokens") or 0
        reply.cache_write_tokens = usage.get("cache_creation_input_tokens") or 0
        reply.input_tokens = (
            (usage.get("input_tokens") or 0) + reply.cache_read_tokens + reply.cache_write_tokens
        )
    if usage.get("output_tokens") is not None:
        reply.output_tokens = usage["output_tokens"] or reply.output_tokens or 0


def _is_structured(reply: ReplyAccumulator, name: str) -> bool:
    request = reply.request
    structured = _structured_tool(request) if request is not None else None
    return structured is not None and structured["name"] == name


def _wrapped(reply: ReplyAccumulator) -> bool:
    fmt = reply.request.response_format
    return fmt.type == "json_schema" and bool(fmt.schema) and fmt.schema.get("type") != "object"


def _unwrap(reply: ReplyAccumulator, text: str) -> str:
    """The structured reply's JSON text; a non-object schema was wrapped in ``value``."""
    if _wrapped(reply):
        return json.dumps(_arguments(text).get("value"))
    return text or "{}"


def read_event(event: dict, reply: ReplyAccumulator) -> str | None:
    """Apply one Messages stream event to ``reply``; return its text. Tool-use blocks become
    ToolCallStart / ToolCallDelta events on ``reply.events``; the structured-output tool's
    input becomes text."""
    kind = event.get("type")
    index = event.get("index", 0)
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            return reply.text(delta["text"])
        if delta_type == "input_json_delta":
            fragment = delta.get("partial_json", "")
            if index in reply.structured:
                reply.structured[index] += fragment
                # An object schema's input is the reply: stream it as it comes.
                return None if _wrapped(reply) or not fragment else reply.text(fragment)
            call = reply.tool_calls.get(index)
            if call is not None and fragment:
                call["arguments"] += fragment
                position = sorted(reply.tool_calls).index(index)
                reply.events.append(ToolCallDelta(index=position, arguments=fragment))
        elif delta_type in ("thinking_delta", "signature_delta") and index in reply.thinking:
            field = "text" if delta_type == "thinking_delta" else "signature"
            piece = delta.get(delta_type.removesuffix("_delta"), "")
            reply.thinking[index][field] += piece
            reply.events.append(ThinkingDelta(**{field: piece}))
    elif kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            reply.first_output()
            if _is_structured(reply, block.get("name")):
                reply.structured[index] = ""
                return None
            reply.tool_calls[index] = {
                "id": block.get("id", ""),
                "name": block["name"],
                "arguments": "",
            }
            position = len(reply.tool_calls) - 1
            reply.events.append(
                ToolCallStart(index=position, id=block.get("id", ""), name=block["name"])
            )
        elif block.get("type") == "text" and block.get("text"):
            return reply.text(block["text"])
        elif block.get("type") in ("thinking", "redacted_thinking"):
            reply.first_output()
            redacted = block.get("data", "") if block["type"] == "redacted_thinking" else ""
            reply.thinking[index] = {"text": "", "signature": "", "redacted": redacted}
            if redacted:
                reply.events.append(ThinkingDelta(redacted=redacted))
    elif kind == "content_block_stop":
        if index in reply.structured:
            if _wrapped(reply):
                return reply.text(_unwrap(reply, reply.structured[index]))
            return None if reply.structured[index] else reply.text("{}")
        call = reply.tool_calls.get(index)
        if call is not None and not call["arguments"]:
            call["arguments"] = "{}"
            position = sorted(reply.tool_calls).index(index)
            reply.events.append(ToolCallDelta(index=position, arguments="{}"))
    elif kind == "message_start":
        message = event.get("message") or {}
        reply.response_id = message.get("id", "")
        reply.response_model = message.get("model", "")
        _read_usage(message.get("usage") or {}, reply)
    elif kind == "message_delta":
        delta = event.get("delta") or {}
        reply.finish_reason = _finish(reply, delta.get("stop_reason")) or reply.finish_reason
        reply.stop_sequence = delta.get("stop_sequence") or reply.stop_sequence
        _read_usage(event.get("usage") or {}, reply)
    elif kind == "message_stop":
        reply.finished = True
    return None


def _finish(reply: ReplyAccumulator, stop_reason: str | None) -> str | None:
    # The structured-output tool call is the answer, not a call for the client to make.
    if stop_reason == "tool_use" and reply.structured and not reply.tool_calls:
        return "end_turn"
    return stop_reason


def read_response(body: dict, reply: ReplyAccumulator) -> None:
    """Apply a whole Messages response body to ``reply``."""
    reply.response_id = body.get("id", "")
    reply.response_model = body.get("model", "")
    _read_usage(body.get("usage") or {}, reply)
    for index, block in enumerate(body.get("content") or ()):
        kind = block.get("type")
        if kind == "text":
            reply.text(block.get("text", ""))
        elif kind in ("thinking", "redacted_thinking"):
            reply.thinking[index] = {
                "text": block.get("thinking", ""),
                "signature": block.get("signature", ""),
                "redacted": block.get("data", ""),
            }
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            if _is_structured(reply, block.get("name")):
                reply.structured[index] = arguments
                reply.text(_unwrap(reply, arguments))
                continue
            reply.tool_calls[index] = {
                "id": block.get("id", ""),
                "name": block.get("name", ""),
                "arguments": arguments,
            }
    reply.finish_reason = _finish(reply, body.get("stop_reason"))
    reply.stop_sequence = body.get("stop_sequence")
    reply.finished = body.get("type") == "message"


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
        return request_body(request)

    def read_event(self, event: dict, reply: ReplyAccumulator) -> str | None:
        return read_event(event, reply)

    def read_response(self, body: dict, reply: ReplyAccumulator) -> None:
        read_response(body, reply)

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


__all__ = ["AnthropicMessagesProvider", "read_event", "read_response", "request_body"]
