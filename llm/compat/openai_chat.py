"""OpenAI Chat Completions (``POST /v1/chat/completions``) and OpenAI's error shape, for
every catalog model. The body is translated to the canonical call model (messages with text,
image, tool-call and tool-result parts; tools, tool choice, structured output, sampling,
logprobs, n, reasoning effort) and the reply back, by the pure functions
``chat_request_parse``, ``completion_body`` and ``chunk_stream``.

Neutral values (``frequency_penalty: 0``, ``response_format: {"type": "text"}``,
``logit_bias: {}``, ``store: false``, ``tools: []``...) are accepted for every model; what an
Anthropic model cannot do (``n`` > 1, ``logprobs``, penalties, ``logit_bias``, ``audio``...)
is a 400 naming the field. Unknown fields reach OpenAI-format providers unchanged."""

import json
import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from llm.compat.core import (
    OPENAI,
    GatewayError,
    GatewayRequest,
    image_from_url,
    integer,
    invalid,
    number,
    openai_response_format,
    openai_tool_choice,
    parse_json_object,
    positive_int,
    stop_sequences,
    tool_of_function,
)
from llm.compat.gateway import (
    call_complete,
    call_open,
    call_stream,
    record_after_response,
)
from llm.compat.http import error_headers, json_response, request_body, sse_response
from llm.models import GatewayEndpoint
from llm.providers import ChatMessage, CompletionResult
from llm.providers.canonical import (
    LogprobsDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
)

# Request fields translated for every provider; any other field is passed through.
TRANSLATED = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "seed",
    "reasoning_effort",
    "logit_bias",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
}
# Fields that change nothing in the reply: forwarded to OpenAI-format providers only.
HINTS = ("service_tier", "prompt_cache_key", "safety_identifier")
ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "rate_limit": "rate_limit_error",
    "provider": "server_error",
    "timeout": "timeout",
    "overloaded": "server_error",
}


def error_body(error: GatewayError) -> dict:
    return {
        "error": {
            "message": error.message,
            "type": ERROR_TYPES.get(error.kind, "invalid_request_error"),
            "param": error.param,
            "code": error.code,
        }
    }


def error_response(error: GatewayError) -> HttpResponse:
    return json_response(error_body(error), error.status, error_headers(error))


def _string(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise invalid(f"'{name}' must be a string of at most {limit} characters.", param=name)
    return value


def _metadata(body: dict) -> dict | None:
    value = body.get("metadata")
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise invalid("'metadata' must be an object of up to 16 string values.", param="metadata")
    return value


def _content_parts(content: object, where: str) -> tuple[list, bool]:
    """A message's content as canonical parts, and whether it held a part type only an
    OpenAI-format provider can take as it is (audio, files...)."""
    if content is None:
        return [], False
    if isinstance(content, str):
        return ([TextPart(content)] if content else []), False
    if not isinstance(content, list):
        raise invalid("Message content must be a string or a list of content parts.", param=where)
    parts: list = []
    native = False
    for index, part in enumerate(content):
        param = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise invalid("Content parts must be objects.", param=param)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            if not isinstance(part.get("text"), str):
                raise invalid("A text part needs a 'text' string.", param=param)
            # cache_control on a part (as gateways in front of Anthropic accept it) is kept
            parts.append(TextPart(part["text"], cache=isinstance(part.get("cache_control"), dict)))
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            detail = image.get("detail") if isinstance(image.get("detail"), str) else ""
            parts.append(image_from_url(image.get("url"), f"{param}.image_url", detail))
        elif kind == "refusal":
            continue
        else:
            native = True
    return parts, native


def _tool_calls(raw: object, where: str) -> list[ToolCallPart]:
    if not isinstance(raw, list):
        raise invalid("'tool_calls' must be a list.", param=where)
    calls = []
    for index, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid("A tool call needs a function with a name.", param=f"{where}[{index}]")
        arguments = function.get("arguments") or "{}"
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            ToolCallPart(id=str(call.get("id") or ""), name=function["name"], arguments=arguments)
        )
    return calls


def messages_from_openai(
    raw: object, param: str = "messages"
) -> tuple[str, bool, list[ChatMessage], str]:
    """System text, whether it asks for a cache breakpoint, canonical turns, and the first
    field that only an OpenAI-format provider can take as it is ("" when all translates)."""
    if not isinstance(raw, list) or not raw:
        raise invalid(f"'{param}' must be a non-empty list.", param=param)
    if len(raw) > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise invalid(
            f"'{param}' may hold at most {settings.LLM_MAX_MESSAGES_PER_CONVERSATION} messages.",
            param=param,
        )
    system: list[str] = []
    system_cache = False
    turns: list[ChatMessage] = []
    native = ""
    for index, message in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(message, dict):
            raise invalid("Each message must be an object.", param=where)
        role = message.get("role")
        if role == "function" or message.get("function_call"):
            native = native or where
            continue
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise invalid(
                "A message's role must be system, developer, user, assistant or tool.",
                param=f"{where}.role",
            )
        parts, other = _content_parts(message.get("content"), f"{where}.content")
        if other:
            native = native or f"{where}.content"
        if role in ("system", "developer"):
            system.append("".join(p.text for p in parts if isinstance(p, TextPart)))
            system_cache = system_cache or any(p.cache for p in parts)
            continue
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(
                    "A tool message needs a 'tool_call_id'.", param=f"{where}.tool_call_id"
                )
            text = "".join(p.text for p in parts if isinstance(p, TextPart))
            images = tuple(p for p in parts if not isinstance(p, TextPart))
            result = ToolResultPart(tool_call_id=call_id, content=text, images=images)
            if (
                turns
                and turns[-1].role == "user"
                and turns[-1].parts
                and all(isinstance(p, ToolResultPart) for p in turns[-1].parts)
            ):  # every result of one assistant turn in one user turn
                turns[-1] = ChatMessage("user", parts=(*turns[-1].parts, result))
            else:
                turns.append(ChatMessage("user", parts=(result,)))
            continue
        if role == "assistant" and message.get("tool_calls"):
            parts += _tool_calls(message["tool_calls"], f"{where}.tool_calls")
        if len(parts) == 1 and type(parts[0]) is TextPart:
            turns.append(ChatMessage(role, parts[0].text))
        elif parts:
            turns.append(ChatMessage(role, parts=tuple(parts)))
        elif role == "user":
            turns.append(ChatMessage(role, ""))
    if not any(turn.role == "user" for turn in turns):
        raise invalid(f"'{param}' must hold at least one user message.", param=param)
    return "\n\n".join(system), system_cache, turns, native


def _tools(body: dict) -> tuple[tuple, bool]:
    raw = body.get("tools")
    if raw is None:
        return (), False
    if not isinstance(raw, list) or len(raw) > 128:
        raise invalid("'tools' must be a list of up to 128 tools.", param="tools")
    tools = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise invalid("Each tool must be an object.", param=f"tools[{index}]")
        if tool.get("type", "function") != "function":
            return (), True  # custom tools: only OpenAI takes them
        tools.append(tool_of_function(tool.get("function"), f"tools[{index}].function"))
    return tuple(tools), False


def chat_request_parse(body: dict) -> GatewayRequest:
    """A Chat Completions body as a neutral request, or a 400 naming the parameter."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("'model' is required: a model id from GET /v1/models.", param="model")
    system, system_cache, turns, native = messages_from_openai(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", param="stream")
    n = integer(body, "n", low=1, high=128) or 1
    if n > 1 and stream:
        raise invalid("'n' greater than 1 is served without streaming only.", param="n")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise invalid("'stream_options' must be an object.", param="stream_options")
    max_tokens_param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    tools, native_tools = _tools(body)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise invalid("'logprobs' must be a boolean.", param="logprobs")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in ("minimal", "low", "medium", "high"):
        raise invalid(
            "'reasoning_effort' must be minimal, low, medium or high.", "reasoning_effort"
        )
    options = {
        "frequency_penalty": number(body, "frequency_penalty", low=-2, high=2),
        "presence_penalty": number(body, "presence_penalty", low=-2, high=2),
        "seed": integer(body, "seed", low=-(2**63), high=2**63 - 1),
        "n": n,
        "logprobs": bool(logprobs),
        "top_logprobs": integer(body, "top_logprobs", low=0, high=20),
        "tools": tools,
        "tool_choice": openai_tool_choice(body.get("tool_choice")),
        "parallel_tool_calls": parallel,
        "response_format": openai_response_format(body.get("response_format"), "response_format"),
        "reasoning_effort": effort,
        "system_cache": system_cache or None,
    }
    options = {key: value for key, value in options.items() if value is not None}
    passthrough = {key: value for key, value in body.items() if key not in TRANSLATED}
    hints = {key: body[key] for key in HINTS if body.get(key) is not None}
    if native_tools:
        passthrough["tools"] = body["tools"]
        native = native or "tools"
    if body.get("logit_bias"):  # {} is neutral
        passthrough["logit_bias"] = body["logit_bias"]
    if body.get("store") is not None:
        (passthrough if body["store"] else hints)["store"] = body["store"]
    if native:
        passthrough = {"messages": body["messages"], **passthrough}
    return GatewayRequest(
        endpoint=GatewayEndpoint.CHAT_COMPLETIONS,
        wire_format=OPENAI,
        model=model,
        messages=turns,
        system=system,
        max_tokens=positive_int(body, max_tokens_param),
        max_tokens_param=max_tokens_param,
        temperature=number(body, "temperature", low=0, high=2),
        top_p=number(body, "top_p", low=0, high=1),
        stop=stop_sequences(body.get("stop"), "stop"),
        stream=stream,
        include_usage=bool(stream_options.get("include_usage")),
        client_user=_string(body, "user", 256),
        metadata=_metadata(body),
        passthrough=passthrough,
        passthrough_param=native,
        options=options,
        hints=hints,
    )


def usage_body(result: CompletionResult) -> dict:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
    }


def tool_calls_body(calls) -> list[dict]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _choice(index: int, text: str, calls, finish_reason: str, logprobs) -> dict:
    message: dict = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = tool_calls_body(calls)
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason or "stop",
        "logprobs": dict(logprobs) if logprobs else None,
    }


def completion_body(result: CompletionResult, *, id: str, model: str, created: int) -> dict:
    """A ``chat.completion`` for ``result``."""
    choices = [_choice(0, result.text, result.tool_calls, result.finish_reason, result.logprobs)]
    choices += [
        _choice(index, c.text, c.tool_calls, c.finish_reason, c.logprobs)
        for index, c in enumerate(result.more_choices, start=1)
    ]
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_body(result),
    }


async def chunk_stream(
    relay: AsyncIterator, *, id: str, model: str, created: int, include_usage: bool
) -> AsyncIterator[str]:
    """Canonical stream events as ``chat.completion.chunk`` events. A text delta is a
    pre-rendered prefix plus its JSON-escaped text: no object is built per token."""
    head = (
        f'{{"id":"{id}","object":"chat.completion.chunk",'
        f'"created":{created},"model":{json.dumps(model)},"choices":'
    )
    tail = ',"usage":null}\n\n' if include_usage else "}\n\n"

    def chunk(delta: dict, finish: str | None = None, logprobs: dict | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return f"data: {head}[{json.dumps(choice, separators=(',', ':'))}]{tail}"

    yield f'data: {head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]{tail}'
    async for item in relay:
        if isinstance(item, str):
            yield f'data: {head}[{{"index":0,"delta":{{"content":{json.dumps(item)}}},"logprobs":null,"finish_reason":null}}]{tail}'
        elif isinstance(item, ToolCallStart):
            call = {
                "index": item.index,
                "id": item.id,
                "type": "function",
                "function": {"name": item.name, "arguments": ""},
            }
            yield chunk({"tool_calls": [call]})
        elif isinstance(item, ToolCallDelta):
            yield chunk(
                {"tool_calls": [{"index": item.index, "function": {"arguments": item.arguments}}]}
            )
        elif isinstance(item, LogprobsDelta):
            yield chunk({}, logprobs={"content": list(item.content), "refusal": None})
        elif isinstance(item, CompletionResult):
            yield chunk({}, item.finish_reason or "stop")
            if include_usage:
                yield f'data: {head}[],"usage":{json.dumps(usage_body(item))}}}\n\n'
            yield "data: [DONE]\n\n"
        elif isinstance(item, GatewayError):  # the provider failed mid-stream
            yield f"data: {json.dumps(error_body(item))}\n\n"


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        call = await call_open(
            request,
            endpoint=GatewayEndpoint.CHAT_COMPLETIONS,
            parse=lambda: chat_request_parse(parse_json_object(raw)),
        )
        created = int(time.time())
        names = {"id": f"chatcmpl-{call.id.hex}", "model": call.model.slug, "created": created}
        if not call.request.stream:
            result = await call_complete(call)
            response = json_response(completion_body(result, **names), headers=call.headers())
            return record_after_response(response, call, result=result)
        relay = await call_stream(call)
    except GatewayError as error:
        return error_response(error)
    events = chunk_stream(relay, **names, include_usage=call.request.include_usage)
    return sse_response(events, headers=call.headers())
