"""Anthropic Messages (``POST /v1/messages``, streaming events included) and Anthropic's
error shape, for every catalog model: an OpenAI-family model gets the request translated and
its reply translated back (stop reasons, usage).

Content blocks other than text (``tool_use``, ``tool_result``, images...), ``tools``,
``tool_choice``, ``top_k`` and ``thinking`` reach Anthropic models unchanged and are refused
with a 400 naming the parameter for the others. ``cache_control`` on text blocks is a caching
hint and is not forwarded."""

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from llm.compat.core import (
    ANTHROPIC,
    ANTHROPIC_STOP_REASON,
    GatewayError,
    GatewayRequest,
    invalid,
    number,
    parse_json_object,
    positive_int,
    stop_sequences,
    text_of_parts,
)
from llm.compat.gateway import (
    Call,
    call_complete,
    call_open,
    call_stream,
    prompt_tokens,
    record_after_response,
)
from llm.compat.http import error_headers, json_response, request_body, sse_response
from llm.models import GatewayEndpoint
from llm.providers import ChatMessage, CompletionResult

TRANSLATED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
}
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
    message = error.message if not error.param else f"{error.param}: {error.message}"
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(error.kind, "api_error"), "message": message},
    }


def error_response(error: GatewayError) -> HttpResponse:
    return json_response(error_body(error), error.status, error_headers(error))


def _system(value: object) -> tuple[str, bool]:
    """The system prompt's text, and whether it holds more than text."""
    if value is None:
        return "", False
    text = text_of_parts(value, "system", text_types=("text",))
    if text is None:
        return "", True
    return text, False


def messages_request_parse(body: dict) -> GatewayRequest:
    """A Messages body as a neutral request, or a 400 naming the parameter."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("model: a model id from GET /v1/models is required.", param="model")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: a non-empty list is required.", param="messages")
    if len(raw) > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise invalid("messages: too many messages.", param="messages")
    if body.get("max_tokens") is None:
        raise invalid("max_tokens: Field required", param="max_tokens")
    system, native_system = _system(body.get("system"))
    native = "system" if native_system else ""
    turns: list[ChatMessage] = []
    for index, message in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid("Each message needs a role of user or assistant.", param=where)
        text = text_of_parts(message.get("content"), f"{where}.content", text_types=("text",))
        if text is None:
            native = native or f"{where}.content"
            text = ""
        turns.append(ChatMessage(role=message["role"], content=text))
    if turns[0].role != "user" and not native:
        raise invalid("messages: the first message must use the user role.", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: must be a boolean.", param="stream")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata: must be an object.", param="metadata")
    client_user = (metadata or {}).get("user_id") or ""
    if not isinstance(client_user, str) or len(client_user) > 256:
        raise invalid("metadata.user_id: must be a string.", param="metadata.user_id")
    passthrough = {key: value for key, value in body.items() if key not in TRANSLATED}
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
    )


def _stop_reason(result: CompletionResult) -> str:
    if result.stop_sequence:
        return "stop_sequence"
    return ANTHROPIC_STOP_REASON.get(result.finish_reason, "end_turn")


def message_body(call: Call, result: CompletionResult) -> dict:
    content = (
        [{"type": "text", "text": result.text}] if result.text or not result.tool_calls else []
    )
    content += list(result.tool_calls)
    return {
        "id": f"msg_{call.id.hex}",
        "type": "message",
        "role": "assistant",
        "model": call.model.slug,
        "content": content,
        "stop_reason": _stop_reason(result),
        "stop_sequence": result.stop_sequence,
        "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
    }


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"


async def _events(call: Call, relay: AsyncIterator) -> AsyncIterator[str]:
    """The relay as Messages stream events; a text delta is a pre-rendered frame around its
    JSON-escaped text."""
    start = {
        "id": f"msg_{call.id.hex}",
        "type": "message",
        "role": "assistant",
        "model": call.model.slug,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens(call.request), "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    delta_head = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":'
    )
    async for item in relay:
        if isinstance(item, str):
            yield f"{delta_head}{json.dumps(item)}}}}}\n\n"
        elif isinstance(item, CompletionResult):
            yield _event("content_block_stop", {"index": 0})
            for index, block in enumerate(item.tool_calls, start=1):
                yield _event(
                    "content_block_start", {"index": index, "content_block": {**block, "input": {}}}
                )
                partial = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
                yield _event("content_block_delta", {"index": index, "delta": partial})
                yield _event("content_block_stop", {"index": index})
            delta = {"stop_reason": _stop_reason(item), "stop_sequence": item.stop_sequence}
            usage = {"input_tokens": item.input_tokens, "output_tokens": item.output_tokens}
            yield _event("message_delta", {"delta": delta, "usage": usage})
            yield _event("message_stop", {})
        else:  # the provider failed mid-stream: Anthropic's SDK raises on an error event
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
        if not call.request.stream:
            result = await call_complete(call)
            response = json_response(message_body(call, result), headers=call.headers())
            return record_after_response(response, call, result=result)
        relay = await call_stream(call)
    except GatewayError as error:
        return error_response(error)
    return sse_response(_events(call, relay), headers=call.headers())
