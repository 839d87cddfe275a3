"""The stand-in's OpenAI Chat Completions wire format: ``POST /v1/chat/completions`` (plain
and streamed, usage with ``stream_options.include_usage``, ``stop``, and tool calls: given
``tools``, a user turn gets a call of the first tool echoing its text), and OpenAI's errors."""

import json
import time
import uuid

from llm.standin.core import Exchange, compose_reply

ERROR_CODES = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "model_not_found"}
STREAM_ERROR = (
    'data: {"error":{"message":"The server had an error while processing your request.",'
    '"type":"server_error","param":null,"code":null}}\n\n'
)


def error(exchange: Exchange, status: int, kind: str, message: str, headers=None) -> None:
    body = {
        "error": {"message": message, "type": kind, "param": None, "code": ERROR_CODES.get(status)}
    }
    exchange.json(status, body, headers)


def _tool_name(body: dict, messages: list[dict]) -> str | None:
    tools = body.get("tools") or []
    if tools and messages and messages[-1].get("role") == "user":
        return (tools[0].get("function") or {}).get("name")
    return None


def chat_completions(exchange: Exchange) -> None:
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    if not exchange.headers.get("Authorization", "").startswith("Bearer "):
        return error(exchange, 401, "invalid_request_error", "Missing bearer token.")
    body = exchange.read_json()
    if body is None or not isinstance(body.get("messages"), list):
        return error(exchange, 400, "invalid_request_error", "Invalid JSON body.")
    system = "\n".join(
        str(m.get("content", ""))
        for m in body["messages"]
        if m.get("role") in ("system", "developer")
    )
    messages = [m for m in body["messages"] if m.get("role") not in ("system", "developer")]
    plan = exchange.plan(body, system, messages)
    if plan is None:
        return None
    stop = body.get("stop")
    reply = compose_reply(
        plan,
        system=system,
        messages=messages,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 4096,
        stop=[stop] if isinstance(stop, str) else stop,
        tool_name=_tool_name(body, messages),
    )
    tool_call = None
    if reply.tool_call:
        tool_call = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": reply.tool_call["name"],
                "arguments": json.dumps(reply.tool_call["arguments"]),
            },
        }
    finish = "tool_calls" if tool_call else "length" if reply.truncated else "stop"
    completion_tokens = len(reply.pieces) if not tool_call else 12
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": reply.prompt_tokens + completion_tokens,
    }
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    model = body["model"]

    if not body.get("stream"):
        if exchange.whole_reply_fault(plan):
            return None
        exchange.sleep(plan.latency_ms / 1000)
        message = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if tool_call:
            message["tool_calls"] = [tool_call]
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return exchange.json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )

    def chunk(delta: dict, finish_reason: str | None = None, with_usage: bool = False) -> str:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": []
            if with_usage
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if with_usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    exchange.start_stream()
    exchange.sleep(plan.latency_ms / 1000)
    exchange.chunk(chunk({"role": "assistant", "content": ""}))
    if tool_call:
        arguments = tool_call["function"]["arguments"]
        head = {
            **tool_call,
            "index": 0,
            "function": {"name": tool_call["function"]["name"], "arguments": ""},
        }
        exchange.chunk(chunk({"tool_calls": [head]}))
        for start in range(0, len(arguments), 8):  # arguments arrive in fragments
            fragment = {"index": 0, "function": {"arguments": arguments[start : start + 8]}}
            exchange.chunk(chunk({"tool_calls": [fragment]}))
    elif not exchange.stream_pieces(
        reply.pieces, plan, lambda text: chunk({"content": text}), error=lambda: STREAM_ERROR
    ):
        return None
    exchange.chunk(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        exchange.chunk(chunk({}, with_usage=True))
    exchange.chunk("data: [DONE]\n\n")
    exchange.end_stream()
    return None
