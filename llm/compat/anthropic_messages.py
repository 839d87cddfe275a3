"""Anthropic Messages (``POST /v1/messages``, streaming events included) and Anthropic's
error shape, for every catalog model. The body is translated to the canonical call model
(text, image, tool_use and tool_result blocks; ``cache_control`` hints; tools and tool choice;
``thinking``; ``output_format`` structured output) and the reply back, by the pure functions
``messages_request_parse``, ``message_body`` and ``event_stream``.

Blocks and tools with no canonical meaning (documents, server tools, MCP...) reach Anthropic
models unchanged and are refused with a 400 naming the field for the others."""

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from llm.compat.core import (
    ANTHROPIC,
    ANTHROPIC_STOP_REASON,
    IMAGE_TYPES,
    GatewayError,
    GatewayRequest,
    image_from_url,
    integer,
    invalid,
    json_schema_object,
    number,
    parse_json_object,
    positive_int,
    stop_sequences,
)
from llm.compat.gateway import (
    call_complete,
    call_open,
    call_stream,
    prompt_tokens,
    record_after_response,
)
from llm.compat.http import error_headers, json_response, request_body, sse_response
from llm.models import GatewayEndpoint
from llm.providers import ChatMessage, CompletionResult
from llm.providers.canonical import (
    ImagePart,
    ResponseFormat,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
)

TRANSLATED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_format",
    "output_config",
    "service_tier",
}
HINTS = ("service_tier",)
ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "provider": "api_error",
    "timeout": "timeout_error",
    "overloaded": "overloaded_error",
}


def error_body(error: GatewayError) -> dict:
    message = error.message
    if error.param and error.param not in message:  # say which field, once
        message = f"{error.param}: {message}"
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(error.kind, "api_error"), "message": message},
    }


def error_response(error: GatewayError) -> HttpResponse:
    return json_response(error_body(error), error.status, error_headers(error))


def _cache(block: dict) -> bool:
    return isinstance(block.get("cache_control"), dict)


def _image(block: dict, where: str) -> ImagePart:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid("An image block needs a 'source' object.", param=f"{where}.source")
    if source.get("type") == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in IMAGE_TYPES or not isinstance(data, str) or not data:
            raise invalid(
                "A base64 image needs 'data' and a media_type of image/jpeg, image/png, "
                "image/gif or image/webp.",
                param=f"{where}.source",
            )
        return ImagePart(media_type=media_type, data=data, cache=_cache(block))
    if source.get("type") == "url":
        image = image_from_url(source.get("url"), f"{where}.source.url")
        return ImagePart(url=image.url, cache=_cache(block))
    raise invalid("An image's source must be base64 or url.", param=f"{where}.source.type")


def _text(block: dict, where: str) -> TextPart:
    if not isinstance(block.get("text"), str):
        raise invalid("A text block needs a 'text' string.", param=where)
    return TextPart(block["text"], cache=_cache(block))


def _tool_result(block: dict, where: str) -> ToolResultPart | None:
    content = block.get("content")
    texts: list[str] = []
    images: list[ImagePart] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, item in enumerate(content):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text":
                texts.append(_text(item, f"{where}.content.{index}").text)
            elif kind == "image":
                images.append(_image(item, f"{where}.content.{index}"))
            else:
                return None
    elif content is not None:
        raise invalid("A tool result's content must be a string or blocks.", param=where)
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise invalid("A tool_result needs a 'tool_use_id'.", param=f"{where}.tool_use_id")
    return ToolResultPart(
        tool_call_id=tool_use_id,
        content="\n".join(texts),
        images=tuple(images),
        is_error=block.get("is_error") is True,
        cache=_cache(block),
    )


def _parts(content: object, where: str) -> tuple[tuple, bool]:
    """A message's content as canonical parts, and whether it held a block only an Anthropic
    provider can take as it is (documents, server tool blocks...)."""
    if isinstance(content, str):
        return (TextPart(content),), False
    if not isinstance(content, list):
        raise invalid("Message content must be a string or a list of blocks.", param=where)
    parts: list = []
    for index, block in enumerate(content):
        param = f"{where}.{index}"
        if not isinstance(block, dict):
            raise invalid("Content blocks must be objects.", param=param)
        kind = block.get("type")
        if kind == "text":
            parts.append(_text(block, param))
        elif kind == "image":
            parts.append(_image(block, param))
        elif kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str) or not isinstance(block.get("input", {}), dict):
                raise invalid("A tool_use block needs a name and an input object.", param=param)
            parts.append(
                ToolCallPart(
                    id=str(block.get("id") or ""),
                    name=name,
                    arguments=json.dumps(block.get("input") or {}),
                )
            )
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            parts.append(ThinkingPart(block["thinking"], str(block.get("signature") or "")))
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            parts.append(ThinkingPart(redacted=block["data"]))
        elif kind == "tool_result":
            result = _tool_result(block, param)
            if result is None:
                return (), True
            parts.append(result)
        else:
            return (), True
    return tuple(parts), False


def _system(value: object) -> tuple[str, bool, bool]:
    """The system prompt's text, whether it asks for a cache breakpoint, and whether it holds
    more than text."""
    if value is None:
        return "", False, False
    if isinstance(value, str):
        return value, False, False
    if not isinstance(value, list):
        raise invalid("Must be a string or a list of text blocks.", param="system")
    texts = []
    cache = False
    for index, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            return "", False, True
        texts.append(_text(block, f"system.{index}").text)
        cache = cache or _cache(block)
    return "\n\n".join(texts), cache, False


def _tools(body: dict) -> tuple[tuple, bool]:
    raw = body.get("tools")
    if raw is None:
        return (), False
    if not isinstance(raw, list) or len(raw) > 128:
        raise invalid("Must be a list of up to 128 tools.", param="tools")
    tools = []
    for index, tool in enumerate(raw):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise invalid("Each tool must be an object.", param=where)
        if tool.get("type") not in (None, "custom"):
            return (), True  # server tools (web search, bash...): Anthropic's own
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("A tool needs a name.", param=f"{where}.name")
        description = tool.get("description") or ""
        if not isinstance(description, str):
            raise invalid("Must be a string.", param=f"{where}.description")
        tools.append(
            Tool(
                name=name,
                description=description,
                parameters=json_schema_object(
                    tool.get("input_schema") or {"type": "object"}, f"{where}.input_schema"
                ),
                cache=_cache(tool),
            )
        )
    return tuple(tools), False


def _tool_choice(value: object) -> tuple[ToolChoice | None, bool | None]:
    """The tool choice, and ``parallel_tool_calls`` (False when parallel use is disabled)."""
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid("Must have a type of auto, any, tool or none.", param="tool_choice")
    parallel = False if value.get("disable_parallel_tool_use") is True else None
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("A tool choice of type tool needs a name.", param="tool_choice.name")
        return ToolChoice(mode="tool", name=name), parallel
    return ToolChoice(mode={"any": "required"}.get(kind, kind)), parallel


def _thinking(value: object) -> int | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "disabled":
        return None
    budget = value.get("budget_tokens") if kind == "enabled" else None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
        raise invalid(
            "Must be {type: disabled} or {type: enabled, budget_tokens >= 1024}.", "thinking"
        )
    return budget


def _output_format(value: object, param: str) -> ResponseFormat | None:
    """Anthropic's structured output (``output_config.format``, or the beta's
    ``output_format``: ``{type: json_schema, schema}``)."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        raise invalid("Must be {type: json_schema, schema: {...}}.", param=param)
    schema = json_schema_object(value.get("schema"), f"{param}.schema")
    return ResponseFormat(type="json_schema", name="response", schema=schema)


def _output_config(body: dict) -> tuple[ResponseFormat | None, dict]:
    """Structured output from ``output_config.format`` (or ``output_format``), and what of
    ``output_config`` only an Anthropic model takes (``effort``)."""
    config = body.get("output_config")
    if config is None:
        return _output_format(body.get("output_format"), "output_format"), {}
    if not isinstance(config, dict):
        raise invalid("Must be an object.", param="output_config")
    native = {key: value for key, value in config.items() if key != "format"}
    return _output_format(config.get("format"), "output_config.format"), native


def messages_request_parse(body: dict) -> GatewayRequest:
    """A Messages body as a neutral request, or a 400 naming the parameter."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("A model id from GET /v1/models is required.", param="model")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("A non-empty list is required.", param="messages")
    if len(raw) > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise invalid("Too many messages.", param="messages")
    if body.get("max_tokens") is None:
        raise invalid("Field required", param="max_tokens")
    system, system_cache, native_system = _system(body.get("system"))
    native = "system" if native_system else ""
    turns: list[ChatMessage] = []
    for index, message in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid("Each message needs a role of user or assistant.", param=where)
        parts, other = _parts(message.get("content"), f"{where}.content")
        if other:
            native = native or f"{where}.content"
            turns.append(ChatMessage(role=message["role"], content=""))
        elif len(parts) == 1 and type(parts[0]) is TextPart and not parts[0].cache:
            turns.append(ChatMessage(role=message["role"], content=parts[0].text))
        else:
            turns.append(ChatMessage(role=message["role"], parts=parts))
    if turns[0].role != "user" and not native:
        raise invalid("The first message must use the user role.", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("Must be a boolean.", param="stream")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("Must be an object.", param="metadata")
    client_user = (metadata or {}).get("user_id") or ""
    if not isinstance(client_user, str) or len(client_user) > 256:
        raise invalid("Must be a string.", param="metadata.user_id")
    tools, native_tools = _tools(body)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    response_format, native_config = _output_config(body)
    options = {
        "top_k": integer(body, "top_k", low=1, high=1_000_000),
        "tools": tools,
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel,
        "thinking_budget": _thinking(body.get("thinking")),
        "response_format": response_format,
        "system_cache": system_cache,
        "param_names": {"stop": "stop_sequences"},
    }
    options = {key: value for key, value in options.items() if value is not None}
    passthrough = {key: value for key, value in body.items() if key not in TRANSLATED}
    if native_tools:
        passthrough["tools"] = body["tools"]
        native = native or "tools"
    if native_config:  # effort: an Anthropic model's own control
        passthrough["output_config"] = native_config
        native = native or f"output_config.{next(iter(native_config))}"
    if native:
        passthrough = {"messages": raw, **passthrough}
        if "system" in body:
            passthrough["system"] = body["system"]
    return GatewayRequest(
        endpoint=GatewayEndpoint.MESSAGES,
        wire_format=ANTHROPIC,
        model=model,
        messages=turns,
        system=system,
        max_tokens=positive_int(body, "max_tokens"),
        temperature=number(body, "temperature", low=0, high=1),
        top_p=number(body, "top_p", low=0, high=1),
        stop=stop_sequences(body.get("stop_sequences"), "stop_sequences"),
        stream=stream,
        client_user=client_user,
        metadata=metadata,
        passthrough=passthrough,
        passthrough_param=native,
        options=options,
        hints={key: body[key] for key in HINTS if body.get(key) is not None},
    )


def stop_reason(result: CompletionResult) -> str:
    if result.stop_sequence:
        return "stop_sequence"
    return ANTHROPIC_STOP_REASON.get(result.finish_reason, "end_turn")


def usage_body(result: CompletionResult) -> dict:
    """Anthropic counts cached prompt tokens apart from ``input_tokens``."""
    cached = result.cache_read_tokens + result.cache_write_tokens
    return {
        "input_tokens": max(result.input_tokens - cached, 0),
        "cache_creation_input_tokens": result.cache_write_tokens,
        "cache_read_input_tokens": result.cache_read_tokens,
        "output_tokens": result.output_tokens,
    }


def _input(arguments: str) -> dict:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message_body(result: CompletionResult, *, id: str, model: str) -> dict:
    """A Messages ``message`` for ``result``."""
    content: list[dict] = [
        {"type": "redacted_thinking", "data": t.redacted}
        if t.redacted
        else {"type": "thinking", "thinking": t.text, "signature": t.signature}
        for t in result.thinking
    ]
    if result.text or not (result.tool_calls or result.thinking):
        content.append({"type": "text", "text": result.text})
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
        for c in result.tool_calls
    ]
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(result),
        "stop_sequence": result.stop_sequence,
        "usage": usage_body(result),
    }


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"


async def event_stream(
    relay: AsyncIterator, *, id: str, model: str, input_tokens: int
) -> AsyncIterator[str]:
    """Canonical stream events as Messages stream events: a text block opens with the first
    text, each tool call is a ``tool_use`` block whose input streams as ``input_json_delta``
    fragments. A text delta is a pre-rendered frame around its JSON-escaped text."""
    start = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    block = -1  # the open block's index
    kind = ""  # "text" or "tool_use"
    delta_head = ""
    async for item in relay:
        if isinstance(item, str):
            if kind != "text":
                if block >= 0:
                    yield _event("content_block_stop", {"index": block})
                block, kind = block + 1, "text"
                yield _event(
                    "content_block_start",
                    {"index": block, "content_block": {"type": "text", "text": ""}},
                )
                delta_head = (
                    f'event: content_block_delta\ndata: {{"type":"content_block_delta",'
                    f'"index":{block},"delta":{{"type":"text_delta","text":'
                )
            yield f"{delta_head}{json.dumps(item)}}}}}\n\n"
        elif isinstance(item, ToolCallStart):
            if block >= 0:
                yield _event("content_block_stop", {"index": block})
            block, kind = block + 1, "tool_use"
            tool_use = {"type": "tool_use", "id": item.id, "name": item.name, "input": {}}
            yield _event("content_block_start", {"index": block, "content_block": tool_use})
        elif isinstance(item, ToolCallDelta):
            partial = {"type": "input_json_delta", "partial_json": item.arguments}
            yield _event("content_block_delta", {"index": block, "delta": partial})
        elif isinstance(item, ThinkingDelta):
            if item.redacted or kind != "thinking":
                if block >= 0:
                    yield _event("content_block_stop", {"index": block})
                block, kind = block + 1, "thinking"
                opened = (
                    {"type": "redacted_thinking", "data": item.redacted}
                    if item.redacted
                    else {"type": "thinking", "thinking": "", "signature": ""}
                )
                yield _event("content_block_start", {"index": block, "content_block": opened})
                if item.redacted:
                    kind = "redacted_thinking"
                    continue
            delta = (
                {"type": "thinking_delta", "thinking": item.text}
                if item.text
                else {"type": "signature_delta", "signature": item.signature}
            )
            yield _event("content_block_delta", {"index": block, "delta": delta})
        elif isinstance(item, CompletionResult):
            if block < 0:  # an empty reply still has its (empty) text block
                block = 0
                yield _event(
                    "content_block_start",
                    {"index": 0, "content_block": {"type": "text", "text": ""}},
                )
            yield _event("content_block_stop", {"index": block})
            delta = {"stop_reason": stop_reason(item), "stop_sequence": item.stop_sequence}
            usage = usage_body(item)
            yield _event("message_delta", {"delta": delta, "usage": usage})
            yield _event("message_stop", {})
        elif isinstance(item, GatewayError):  # the provider failed mid-stream
            yield f"event: error\ndata: {json.dumps(error_body(item))}\n\n"


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        call = await call_open(
            request,
            endpoint=GatewayEndpoint.MESSAGES,
            parse=lambda: messages_request_parse(parse_json_object(raw)),
            x_api_key=True,
        )
        names = {"id": f"msg_{call.id.hex}", "model": call.model.slug}
        if not call.request.stream:
            result = await call_complete(call)
            response = json_response(message_body(result, **names), headers=call.headers())
            return record_after_response(response, call, result=result)
        relay = await call_stream(call)
    except GatewayError as error:
        return error_response(error)
    events = event_stream(relay, **names, input_tokens=prompt_tokens(call.request))
    return sse_response(events, headers=call.headers())
