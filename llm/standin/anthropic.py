"""The stand-in's Anthropic Messages wire format: ``POST /v1/messages`` (plain and streamed
events, ``stop_sequences``, and tool use: given ``tools``, a user turn gets a ``tool_use`` of
the first tool echoing its text), and Anthropic's errors."""

import json
import uuid

from llm.standin.core import Exchange, compose_reply

STREAM_ERROR = {"error": {"type": "overloaded_error", "message": "Overloaded"}}


def error(exchange: Exchange, status: int, kind: str, message: str, headers=None) -> None:
    exchange.json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"


def _tool_name(body: dict, messages: list[dict]) -> str | None:
    tools = body.get("tools") or []
    if not tools or not messages or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    if isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    ):
        return None  # the tool's answer: reply in text
    return tools[0].get("name")


def messages(exchange: Exchange) -> None:
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    # Current SDKs send the key as a bearer token; older ones as x-api-key.
    if not (
        exchange.headers.get("x-api-key")
        or exchange.headers.get("Authorization", "").startswith("Bearer ")
    ):
        return error(exchange, 401, "authentication_error", "x-api-key header is required.")
    if not exchange.headers.get("anthropic-version"):
        return error(
            exchange, 400, "invalid_request_error", "anthropic-version header is required."
        )
    body = exchange.read_json()
    if body is None or not isinstance(body.get("messages"), list) or not body.get("max_tokens"):
        return error(
            exchange, 400, "invalid_request_error", "messages and max_tokens are required."
        )
    system = body.get("system") or ""
    if isinstance(system, list):
        system = " ".join(block.get("text", "") for block in system)
    turns = body["messages"]
    plan = exchange.plan(body, system, turns)
    if plan is None:
        return None
    reply = compose_reply(
        plan,
        system=system,
        messages=turns,
        max_tokens=int(body["max_tokens"]),
        stop=body.get("stop_sequences"),
        tool_name=_tool_name(body, turns),
    )
    tool_use = None
    if reply.tool_call:
        tool_use = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": reply.tool_call["name"],
            "input": reply.tool_call["arguments"],
        }
    stop_reason = (
        "tool_use"
        if tool_use
        else "stop_sequence"
        if reply.stop_sequence
        else "max_tokens"
        if reply.truncated
        else "end_turn"
    )
    output_tokens = 12 if tool_use else len(reply.pieces)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    model = body["model"]

    if not body.get("stream"):
        if exchange.whole_reply_fault(plan):
            return None
        exchange.sleep(plan.latency_ms / 1000)
        content = [tool_use] if tool_use else [{"type": "text", "text": reply.text}]
        return exchange.json(
            200,
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": reply.stop_sequence,
                "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": output_tokens},
            },
        )

    exchange.start_stream()
    start = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
    }
    exchange.chunk(_event("message_start", {"message": start}))
    if tool_use:
        exchange.chunk(
            _event("content_block_start", {"index": 0, "content_block": {**tool_use, "input": {}}})
        )
        arguments = json.dumps(tool_use["input"])
        for at in range(0, len(arguments), 8):  # input arrives as partial JSON
            delta = {"type": "input_json_delta", "partial_json": arguments[at : at + 8]}
            exchange.chunk(_event("content_block_delta", {"index": 0, "delta": delta}))
    else:
        exchange.chunk(
            _event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
        )
        exchange.chunk(_event("ping", {}))
        exchange.sleep(plan.latency_ms / 1000)
        if not exchange.stream_pieces(
            reply.pieces,
            plan,
            lambda text: _event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}
            ),
            error=lambda: _event("error", STREAM_ERROR),
        ):
            return None
    exchange.chunk(_event("content_block_stop", {"index": 0}))
    exchange.chunk(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": reply.stop_sequence},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    exchange.chunk(_event("message_stop", {}))
    exchange.end_stream()
    return None
