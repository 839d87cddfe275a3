"""The stand-in's Anthropic Messages wire format: ``POST /v1/messages`` (plain and streamed
events, ``stop_sequences``, images, tools with ``tool_choice`` auto/any/tool/none and parallel
``tool_use`` blocks streamed as partial JSON, structured output through ``output_format`` or
``output_config.format``, and prompt caching by ``cache_control`` breakpoints reported as
cache reads and writes), ``POST /v1/messages/count_tokens``, and Anthropic's errors."""

import json
import uuid

from llm.standin import behaviour as rules
from llm.standin.core import (
    Exchange,
    Prompt,
    argument_fragments,
    cached_prefix,
    compose_reply,
)

STREAM_ERROR = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
MAX_OUTPUT_TOKENS = 128_000


def error(exchange: Exchange, status: int, kind: str, message: str, headers=None) -> None:
    exchange.json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)


def _bad_request(exchange: Exchange, message: str) -> None:
    error(exchange, 400, "invalid_request_error", message)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"


def _system_text(system) -> str:
    if isinstance(system, list):
        return " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    return str(system or "")


def _tool_choice(choice, names: list[str]) -> str | None:
    if choice is None:
        return "auto"
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool":
        return choice.get("name") if choice.get("name") in names else None
    return None


def _output(body: dict):
    output = body.get("output_format") or (body.get("output_config") or {}).get("format")
    if isinstance(output, dict) and output.get("type") == "json_schema":
        return output.get("schema") or {}
    return None


def _prompt(body: dict) -> Prompt:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    tools = [
        (t["name"], t.get("input_schema") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("name") and "input_schema" in t
    ]
    last = messages[-1] if messages else {}
    content = last.get("content")
    results = None
    if last.get("role") == "user" and isinstance(content, list):
        found = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if found:
            results = [rules.content_text(b.get("content")) for b in found]
    choice = body.get("tool_choice") or {}
    return Prompt(
        system=_system_text(body.get("system")),
        messages=messages,
        user_text=rules.last_user_text(messages),
        tool_results=results,
        images=rules.image_count(content) if last.get("role") == "user" else 0,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), [n for n, _ in tools]) or "auto",
        parallel=not (isinstance(choice, dict) and choice.get("disable_parallel_tool_use")),
        output=_output(body),
    )


def _marked(value) -> bool:
    """Whether a block (or any block of a list) carries a ``cache_control`` breakpoint."""
    if isinstance(value, dict):
        return "cache_control" in value
    if isinstance(value, list):
        return any(isinstance(b, dict) and "cache_control" in b for b in value)
    return False


def _cache_segments(body: dict, prompt: Prompt) -> list[tuple[str, int]]:
    """The prompt cut at its ``cache_control`` breakpoints (tools, then system, then
    messages; a top-level ``cache_control`` marks the last message), as (text, tokens) up to
    the last breakpoint."""
    parts = [
        (json.dumps(prompt.tools), rules.tools_tokens(prompt.tools), _marked(body.get("tools"))),
        (
            prompt.system,
            rules.count_tokens(prompt.system) + 4 if prompt.system else 0,
            _marked(body.get("system")),
        ),
    ]
    for position, message in enumerate(prompt.messages):
        marked = _marked(message.get("content")) or (
            position == len(prompt.messages) - 1 and "cache_control" in body
        )
        parts.append((json.dumps(message, sort_keys=True), rules.message_tokens(message), marked))
    segments = []
    text, tokens = "", 0
    for part_text, part_tokens, marked in parts:
        text += part_text
        tokens += part_tokens
        if marked:
            segments.append((text, tokens))
            text, tokens = "", 0
    return segments


def _has_tool_blocks(messages: list) -> bool:
    return any(
        isinstance(block, dict) and block.get("type") in ("tool_use", "tool_result")
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
    )


def messages(exchange: Exchange) -> None:
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    if not _authorized(exchange):
        return None
    body = exchange.read_json()
    if body is None or not isinstance(body.get("messages"), list) or not body.get("max_tokens"):
        return _bad_request(exchange, "messages and max_tokens are required.")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or not 0 < max_tokens <= MAX_OUTPUT_TOKENS:
        return _bad_request(
            exchange,
            f"max_tokens: {max_tokens} > {MAX_OUTPUT_TOKENS}, which is the maximum allowed "
            "number of output tokens for this model",
        )
    if not body.get("tools") and _has_tool_blocks(body["messages"]):
        # As Anthropic's API refuses it: tool turns in the history need the tools defined.
        return _bad_request(
            exchange, "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
    prompt = _prompt(body)
    if _tool_choice(body.get("tool_choice"), [n for n, _ in prompt.tools]) is None:
        return _bad_request(exchange, "tool_choice: no such tool, or an unknown type.")
    plan = exchange.plan(body, prompt.system, prompt.messages)
    if plan is None:
        return None
    reply = compose_reply(plan, prompt, max_tokens=max_tokens, stop=body.get("stop_sequences"))
    tool_uses = [
        {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": call["name"],
            "input": call["arguments"],
        }
        for call in reply.tool_calls
    ]
    stop_reason = (
        "tool_use"
        if tool_uses
        else "stop_sequence"
        if reply.stop_sequence
        else "max_tokens"
        if reply.truncated
        else "end_turn"
    )
    read, written = cached_prefix(
        exchange.server, str(body.get("model")), _cache_segments(body, prompt)
    )
    usage = {
        "input_tokens": reply.prompt_tokens - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        "output_tokens": reply.output_tokens,
        "service_tier": "standard",
    }
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    model = body["model"]

    if not body.get("stream"):
        if exchange.whole_reply_fault(plan):
            return None
        exchange.sleep(plan.latency_ms / 1000)
        content = tool_uses or [{"type": "text", "text": reply.text}]
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
                "usage": usage,
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
        "usage": {**usage, "output_tokens": 1},
    }
    exchange.chunk(_event("message_start", {"message": start}))
    if tool_uses:
        for index, tool_use in enumerate(tool_uses):
            exchange.chunk(
                _event(
                    "content_block_start",
                    {"index": index, "content_block": {**tool_use, "input": {}}},
                )
            )
            for fragment in argument_fragments(json.dumps(tool_use["input"])):
                delta = {"type": "input_json_delta", "partial_json": fragment}
                exchange.chunk(_event("content_block_delta", {"index": index, "delta": delta}))
            exchange.chunk(_event("content_block_stop", {"index": index}))
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
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    exchange.chunk(_event("message_stop", {}))
    exchange.end_stream()
    return None


def _authorized(exchange: Exchange) -> bool:
    # Current SDKs send the key as a bearer token; older ones as x-api-key.
    if not (
        exchange.headers.get("x-api-key")
        or exchange.headers.get("Authorization", "").startswith("Bearer ")
    ):
        error(exchange, 401, "authentication_error", "x-api-key header is required.")
        return False
    if not exchange.headers.get("anthropic-version"):
        _bad_request(exchange, "anthropic-version header is required.")
        return False
    return True


def count_tokens(exchange: Exchange) -> None:
    """``POST /v1/messages/count_tokens``: the input tokens ``/v1/messages`` would report
    for the same request (before caching), without a reply."""
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    if not _authorized(exchange):
        return None
    body = exchange.read_json()
    if body is None or not isinstance(body.get("messages"), list) or not body.get("model"):
        return _bad_request(exchange, "model and messages are required.")
    prompt = _prompt(body)
    try:  # the model must exist; faults are for replies, not counts
        rules.resolve(exchange.server.defaults, str(body["model"]), {})
    except rules.UnknownModel:
        return error(exchange, 404, "not_found_error", f"model: {body['model']}")
    return exchange.json(
        200, {"input_tokens": rules.prompt_tokens(prompt.system, prompt.messages, prompt.tools)}
    )
