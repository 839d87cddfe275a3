"""``POST /v1/messages/count_tokens`` in Anthropic's format, for every catalog chat model:
an Anthropic model's count comes from its provider (or the stand-in); an OpenAI-family
model's is counted here, with the same estimate Parley's admission and context checks use
(about 4 characters a token, plus framing per turn and a fixed size per image) — there is no
OpenAI endpoint to ask, and tiktoken needs encoding files fetched from the internet at run
time.

A count is admitted like every call (``gateway.call_open``: the caller, the team it is charged
to, model access, requests-per-minute limits, a 429 with ``Retry-After`` and the
``x-ratelimit-*`` headers when one is reached), under the ``COUNT`` policy: counting spends no
tokens, so nothing is held against budgets, and no Usage row or call record is written."""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from llm.compat.anthropic_messages import error_response
from llm.compat.core import (
    ANTHROPIC,
    GatewayError,
    GatewayRequest,
    invalid,
    parse_json_object,
    provider_error,
)
from llm.compat.gateway import Call, call_gate, call_open, chat_model_resolve
from llm.compat.http import json_response, request_body
from llm.lifecycle import COUNT
from llm.models import Provider
from llm.providers import ProviderError, estimate_tokens
from llm.providers.context import PER_MESSAGE_OVERHEAD, REPLY_PRIMING
from llm.providers.endpoints import acount_tokens

IMAGE_TOKENS = 1_600  # about what a large image costs (Anthropic: width*height/750)
FORWARDED = ("messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")
ENDPOINT = "messages.count_tokens"  # names the call; a count is never recorded


def _text(content) -> tuple[str, int]:
    """The text of a message's content (or a system prompt), and its images."""
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") in ("image", "document"):
            images += 1
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            texts.append(json.dumps(block.get("input", {})))
        elif block.get("type") == "tool_result":
            text, found = _text(block.get("content"))
            texts.append(text)
            images += found
    return "\n".join(texts), images


def local_count(body: dict) -> int:
    """Parley's estimate of a Messages request's input tokens."""
    total = REPLY_PRIMING
    system, _ = _text(body.get("system"))
    if system:
        total += estimate_tokens(system) + PER_MESSAGE_OVERHEAD
    for message in body["messages"]:
        text, images = _text(message.get("content") if isinstance(message, dict) else None)
        total += estimate_tokens(text) + PER_MESSAGE_OVERHEAD + IMAGE_TOKENS * images
    if body.get("tools"):
        total += estimate_tokens(json.dumps(body["tools"]))
    return total


def count_request_parse(body: dict) -> GatewayRequest:
    """The count request in neutral terms; the fields counted travel as ``passthrough``."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required", param="messages")
    if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages):
        raise invalid("messages: each message needs a role of user or assistant.")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise invalid("tools: Input should be a valid list", param="tools")
    return GatewayRequest(
        endpoint=ENDPOINT,
        wire_format=ANTHROPIC,
        model=body["model"],
        messages=[],
        passthrough={key: body[key] for key in FORWARDED if key in body},
    )


def count_resolve(call: Call) -> None:
    """Find the chat model and admit the count (a request against the rate limits, nothing
    held), or raise the 4xx that says why."""
    call.model, call.target = chat_model_resolve(call.request.model)
    # Model access and rate limits, like every call; counting spends no tokens.
    call_gate(call, COUNT, input_tokens_estimate=0, max_tokens=0)


async def count_tokens(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        # One hop to a thread that gives its database connection back before the provider is
        # waited on; a refusal is not recorded (a count keeps no record).
        call = await call_open(
            request,
            endpoint=ENDPOINT,
            parse=lambda: count_request_parse(parse_json_object(raw)),
            x_api_key=True,
            resolve=count_resolve,
            record=False,
        )
        counted = call.request.passthrough
        if call.model.provider == Provider.ANTHROPIC:
            try:
                tokens = await acount_tokens(
                    api_key=call.target.api_key,
                    base_url=call.target.base_url,
                    timeout=settings.LLM_REQUEST_TIMEOUT,
                    body={"model": call.target.model, **counted},
                )
            except ProviderError as exc:
                raise provider_error(exc) from None
        else:
            tokens = local_count(counted)
    except GatewayError as error:
        return error_response(error)
    return json_response({"input_tokens": tokens}, headers=call.headers())
