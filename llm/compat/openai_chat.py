"""OpenAI Chat Completions (``POST /v1/chat/completions``) and OpenAI's error shape, for
every catalog model: an Anthropic model gets the request translated (system prompt, max
tokens, stop sequences) and its reply translated back (finish reason, usage).

Fields with no neutral meaning (``tools``, ``tool_choice``, ``response_format``, ``seed``,
tool-call turns, image parts...) reach OpenAI-format providers unchanged and are refused
with a 400 naming the parameter for the others."""

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
    record_after_response,
)
from llm.compat.http import error_headers, json_response, request_body, sse_response
from llm.models import GatewayEndpoint
from llm.providers import ChatMessage, CompletionResult

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
}
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


def messages_from_openai(
    raw: object, param: str = "messages"
) -> tuple[str, list[ChatMessage], str]:
    """System text, user/assistant turns, and the first field that only an OpenAI-format
    provider can take as it is ("" when everything translates)."""
    if not isinstance(raw, list) or not raw:
        raise invalid(f"'{param}' must be a non-empty list.", param=param)
    if len(raw) > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise invalid(
            f"'{param}' may hold at most {settings.LLM_MAX_MESSAGES_PER_CONVERSATION} messages.",
            param=param,
        )
    system: list[str] = []
    turns: list[ChatMessage] = []
    native = ""
    for index, message in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(message, dict):
            raise invalid("Each message must be an object.", param=where)
        role = message.get("role")
        if role in ("tool", "function"):
            native = native or f"{where}.role"
            continue
        if role not in ("system", "developer", "user", "assistant"):
            raise invalid(
                "A message's role must be system, developer, user, assistant or tool.",
                param=f"{where}.role",
            )
        if message.get("tool_calls") or message.get("function_call"):
            native = native or f"{where}.tool_calls"
        text = text_of_parts(
            message.get("content"), f"{where}.content", text_types=("text", "input_text")
        )
        if text is None:
            native = native or f"{where}.content"
            text = ""
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(ChatMessage(role=role, content=text))
    if not any(turn.role == "user" for turn in turns):
        raise invalid(f"'{param}' must hold at least one user message.", param=param)
    return "\n\n".join(system), turns, native


def chat_request_parse(body: dict) -> GatewayRequest:
    """A Chat Completions body as a neutral request, or a 400 naming the parameter."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("'model' is required: a model id from GET /v1/models.", param="model")
    system, turns, native = messages_from_openai(body.get("messages"))
    if body.get("n") not in (None, 1):
        raise invalid("Only n=1 is supported.", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise invalid("'stream_options' must be an object.", param="stream_options")
    max_tokens_param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    passthrough = {key: value for key, value in body.items() if key not in TRANSLATED}
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
    )


def _usage(result: CompletionResult) -> dict:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }


def completion_body(call: Call, result: CompletionResult, created: int) -> dict:
    message: dict = {"role": "assistant", "content": result.text or None, "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = list(result.tool_calls)
    return {
        "id": f"chatcmpl-{call.id.hex}",
        "object": "chat.completion",
        "created": created,
        "model": call.model.slug,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": result.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
    }


async def _chunks(call: Call, relay: AsyncIterator, created: int) -> AsyncIterator[str]:
    """The relay as chat.completion.chunk events. Each delta is a pre-rendered prefix plus its
    JSON-escaped text: no object is built per token."""
    head = (
        f'{{"id":"chatcmpl-{call.id.hex}","object":"chat.completion.chunk",'
        f'"created":{created},"model":{json.dumps(call.model.slug)},"choices":'
    )
    include_usage = call.request.include_usage
    tail = ',"usage":null}\n\n' if include_usage else "}\n\n"
    yield f'data: {head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]{tail}'
    async for item in relay:
        if isinstance(item, str):
            yield f'data: {head}[{{"index":0,"delta":{{"content":{json.dumps(item)}}},"finish_reason":null}}]{tail}'
        elif isinstance(item, CompletionResult):
            if item.tool_calls:
                calls = [{"index": i, **c} for i, c in enumerate(item.tool_calls)]
                yield f'data: {head}[{{"index":0,"delta":{{"tool_calls":{json.dumps(calls)}}},"finish_reason":null}}]{tail}'
            finish = json.dumps(item.finish_reason or "stop")
            yield f'data: {head}[{{"index":0,"delta":{{}},"finish_reason":{finish}}}]{tail}'
            if include_usage:
                yield f'data: {head}[],"usage":{json.dumps(_usage(item))}}}\n\n'
            yield "data: [DONE]\n\n"
        else:  # the provider failed mid-stream: OpenAI's SDK raises on an error object
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
        if not call.request.stream:
            result = await call_complete(call)
            response = json_response(completion_body(call, result, created), headers=call.headers())
            return record_after_response(response, call, result=result)
        relay = await call_stream(call)
    except GatewayError as error:
        return error_response(error)
    return sse_response(_chunks(call, relay, created), headers=call.headers())
