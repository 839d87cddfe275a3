"""The stand-in's OpenAI wire format: ``POST /v1/chat/completions`` (plain and streamed, usage
with ``stream_options.include_usage`` and cached prompt tokens, ``stop``, ``n``, ``logprobs``,
images, ``response_format`` json_schema/json_object, and tools with ``tool_choice`` and
parallel calls streamed as argument fragments), ``POST /v1/embeddings``, and OpenAI's errors.
"""

import base64
import hashlib
import json
import math
import random
import struct
import time
import uuid

from llm.standin import behaviour as rules
from llm.standin.core import (
    Exchange,
    Prompt,
    argument_fragments,
    cached_prefix,
    compose_reply,
)

ERROR_CODES = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "model_not_found"}
STREAM_ERROR = (
    'data: {"error":{"message":"The server had an error while processing your request.",'
    '"type":"server_error","param":null,"code":null}}\n\n'
)
MAX_OUTPUT_TOKENS = 128_000  # what the largest real models allow
EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small's
CACHE_BLOCK = 128  # OpenAI reports cached tokens in steps of 128


def error(
    exchange: Exchange, status: int, kind: str, message: str, headers=None, param=None
) -> None:
    code = ERROR_CODES.get(status)
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    exchange.json(status, body, headers)


def _bad_request(exchange: Exchange, message: str, param: str | None = None) -> None:
    error(exchange, 400, "invalid_request_error", message, param=param)


def _authorized(exchange: Exchange) -> bool:
    if exchange.headers.get("Authorization", "").startswith("Bearer "):
        return True
    error(exchange, 401, "invalid_request_error", "Missing bearer token.")
    return False


def _tool_choice(body: dict, names: list[str]) -> str | None:
    """The choice as the core reads it, or None when it names no tool that was given."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    if isinstance(choice, dict):
        if choice.get("type") == "allowed_tools":
            return (choice.get("allowed_tools") or {}).get("mode", "auto")
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return name if name in names else None
    return None


def _output(body: dict):
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {}
    if response_format.get("type") == "json_object":
        return "json_object"
    return None


def _prompt(body: dict) -> Prompt:
    turns = body["messages"]
    system = "\n".join(
        rules.content_text(m.get("content", ""))
        for m in turns
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    )
    messages = [
        m for m in turns if isinstance(m, dict) and m.get("role") not in ("system", "developer")
    ]
    tools = [
        (t["function"]["name"], t["function"].get("parameters") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    results = None
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        results = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.insert(0, rules.content_text(message.get("content")))
    return Prompt(
        system=system,
        messages=messages,
        user_text=rules.last_user_text(messages),
        tool_results=results,
        images=rules.image_count(last.get("content")) if last.get("role") == "user" else 0,
        tools=tools,
        tool_choice=_tool_choice(body, [name for name, _ in tools]) or "auto",
        parallel=body.get("parallel_tool_calls", True) is not False,
        output=_output(body),
    )


def _cached_tokens(exchange: Exchange, model: str, prompt: Prompt, total: int) -> int:
    """Automatic prompt caching: a prefix of 1,024 tokens or more sent before is read from
    the cache, reported in steps of 128 tokens."""
    head = prompt.system + json.dumps(prompt.tools)
    head_tokens = (rules.count_tokens(prompt.system) + 4 if prompt.system else 0) + (
        rules.tools_tokens(prompt.tools)
    )
    segments = [(head, head_tokens)] + [
        (json.dumps(m, sort_keys=True), rules.message_tokens(m)) for m in prompt.messages
    ]
    read, _ = cached_prefix(exchange.server, model, segments)
    return min(read // CACHE_BLOCK * CACHE_BLOCK, total)


def _logprobs(piece: str, top: int) -> dict:
    """A token's log-probability (deterministic) and ``top`` alternatives."""
    value = -round(int(hashlib.sha256(piece.encode()).hexdigest()[:4], 16) / 65536, 4)
    alternatives = [{"token": piece, "logprob": value, "bytes": list(piece.encode())}]
    for index, word in enumerate(rules.WORDS[: max(top - 1, 0)]):
        token = " " + word
        alternatives.append(
            {"token": token, "logprob": round(value - 1 - index, 4), "bytes": list(token.encode())}
        )
    return {**alternatives[0], "top_logprobs": alternatives[:top]}


def chat_completions(exchange: Exchange) -> None:
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    if not _authorized(exchange):
        return None
    body = exchange.read_json()
    if body is None or not isinstance(body.get("messages"), list):
        return _bad_request(exchange, "Invalid JSON body.")
    prompt = _prompt(body)
    if (
        body.get("tool_choice") is not None
        and _tool_choice(body, [n for n, _ in prompt.tools]) is None
    ):
        return _bad_request(
            exchange, "Invalid value for 'tool_choice': no such tool.", param="tool_choice"
        )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    if not isinstance(max_tokens, int) or not 0 < max_tokens <= MAX_OUTPUT_TOKENS:
        return _bad_request(
            exchange,
            f"max_tokens is too large: {max_tokens}. This model supports at most "
            f"{MAX_OUTPUT_TOKENS} completion tokens.",
            param="max_tokens",
        )
    choices_wanted = body.get("n") or 1
    if not isinstance(choices_wanted, int) or not 1 <= choices_wanted <= 8:
        return _bad_request(exchange, "n must be between 1 and 8.", param="n")
    plan = exchange.plan(body, prompt.system, prompt.messages)
    if plan is None:
        return None
    stop = body.get("stop")
    reply = compose_reply(
        plan, prompt, max_tokens=max_tokens, stop=[stop] if isinstance(stop, str) else stop
    )
    tool_calls = [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for call in reply.tool_calls
    ]
    finish = "tool_calls" if tool_calls else "length" if reply.truncated else "stop"
    completion_tokens = reply.output_tokens * choices_wanted
    cached = _cached_tokens(exchange, str(body.get("model")), prompt, reply.prompt_tokens)
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": reply.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    top = body.get("top_logprobs") or 0
    logprobs = bool(body.get("logprobs")) and not tool_calls
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    model = body["model"]

    if not body.get("stream"):
        if exchange.whole_reply_fault(plan):
            return None
        exchange.sleep(plan.latency_ms / 1000)
        message = {
            "role": "assistant",
            "content": None if tool_calls else reply.text,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice_logprobs = (
            {"content": [_logprobs(p, top) for p in reply.pieces], "refusal": None}
            if logprobs
            else None
        )
        choices = [
            {"index": i, "message": message, "finish_reason": finish, "logprobs": choice_logprobs}
            for i in range(choices_wanted)
        ]
        return exchange.json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_standin",
            },
        )

    def chunk(
        delta: dict,
        finish_reason: str | None = None,
        with_usage: bool = False,
        index: int = 0,
        token_logprobs: dict | None = None,
    ) -> str:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_standin",
            "choices": []
            if with_usage
            else [
                {
                    "index": index,
                    "delta": delta,
                    "finish_reason": finish_reason,
                    "logprobs": token_logprobs,
                }
            ],
        }
        if with_usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    def text_chunk(index: int):
        def render(text: str) -> str:
            extra = {"content": [_logprobs(text, top)], "refusal": None} if logprobs else None
            return chunk({"content": text}, index=index, token_logprobs=extra)

        return render

    exchange.start_stream()
    exchange.sleep(plan.latency_ms / 1000)
    for index in range(choices_wanted):
        exchange.chunk(chunk({"role": "assistant", "content": ""}, index=index))
        if tool_calls:
            for position, call in enumerate(tool_calls):
                head = {
                    "index": position,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                exchange.chunk(chunk({"tool_calls": [head]}, index=index))
                for fragment in argument_fragments(call["function"]["arguments"]):
                    piece = {"index": position, "function": {"arguments": fragment}}
                    exchange.chunk(chunk({"tool_calls": [piece]}, index=index))
        elif not exchange.stream_pieces(
            reply.pieces, plan, text_chunk(index), error=lambda: STREAM_ERROR
        ):
            return None
        exchange.chunk(chunk({}, finish, index=index))
    if (body.get("stream_options") or {}).get("include_usage"):
        exchange.chunk(chunk({}, with_usage=True))
    exchange.chunk("data: [DONE]\n\n")
    exchange.end_stream()
    return None


def _embedding_inputs(value) -> list | None:
    """The inputs to embed (strings or token arrays), or None when the shape is wrong."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value]
        if all(isinstance(v, str) for v in value) or all(
            isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value
        ):
            return value
    return None


def embedding_vector(item, dimensions: int) -> list[float]:
    """A deterministic unit vector for a text or token array: the same input always gets the
    same vector, and a shortened one (``dimensions``) is the full one cut and re-normalised,
    as with OpenAI's text-embedding-3 models."""
    rng = random.Random(hashlib.sha256(json.dumps(item).encode()).digest())
    full = [rng.gauss(0, 1) for _ in range(max(EMBEDDING_DIMENSIONS, dimensions))]
    cut = full[:dimensions]
    norm = math.sqrt(sum(v * v for v in cut)) or 1.0
    return [round(v / norm, 6) for v in cut]


def embeddings(exchange: Exchange) -> None:
    exchange.error = lambda *args, **kwargs: error(exchange, *args, **kwargs)
    if not _authorized(exchange):
        return None
    body = exchange.read_json()
    if body is None:
        return _bad_request(exchange, "Invalid JSON body.")
    inputs = _embedding_inputs(body.get("input"))
    if inputs is None or any(item == "" for item in inputs):
        return _bad_request(
            exchange,
            "'input' must be a non-empty string, array of strings, or array of token arrays.",
            param="input",
        )
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 3072:
        return _bad_request(exchange, "dimensions must be between 1 and 3072.", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return _bad_request(
            exchange, "encoding_format must be 'float' or 'base64'.", param="encoding_format"
        )
    texts = [{"role": "user", "content": json.dumps(item)} for item in inputs]
    plan = exchange.plan(body, "", texts)
    if plan is None or exchange.whole_reply_fault(plan):
        return None
    exchange.sleep(plan.latency_ms / 1000)
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_vector(item, dimensions)
        if encoding == "base64":
            packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": packed})
        else:
            data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(i) if isinstance(i, list) else rules.count_tokens(i) for i in inputs)
    return exchange.json(
        200,
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )
