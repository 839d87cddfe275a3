"""``POST /v1/messages/count_tokens`` in Anthropic's format, for every catalog chat model:
an Anthropic model's count comes from its provider (or the stand-in); an OpenAI-family
model's is counted here, with the same estimate Parley's admission and context checks use
(about 4 characters a token, plus framing per turn and a fixed size per image) — there is no
OpenAI endpoint to ask, and tiktoken needs encoding files fetched from the internet at run
time. Counting spends no tokens, so nothing is recorded or budgeted; the caller must be
allowed the model."""

import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from llm.access import model_allowed
from llm.catalog import ProviderTarget, provider_target
from llm.compat.anthropic_messages import error_response
from llm.compat.auth import caller_authenticate
from llm.compat.core import GatewayError, invalid, parse_json_object, provider_error
from llm.compat.http import json_response, request_body
from llm.models import LLMModel, ModelKind, Provider
from llm.providers import ProviderError, estimate_tokens
from llm.providers.context import PER_MESSAGE_OVERHEAD, REPLY_PRIMING
from llm.providers.endpoints import acount_tokens
from project.db import connection_give_back

IMAGE_TOKENS = 1_600  # about what a large image costs (Anthropic: width*height/750)
FORWARDED = ("messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


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


def _parse(raw: bytes) -> dict:
    body = parse_json_object(raw)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required", param="messages")
    if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages):
        raise invalid("messages: each message needs a role of user or assistant.")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise invalid("tools: Input should be a valid list", param="tools")
    return body


def _resolve(request: HttpRequest, body: dict) -> tuple[LLMModel, ProviderTarget]:
    try:
        user, api_key = caller_authenticate(request, x_api_key=True)
        request.user = user  # for the access log line
        model = LLMModel.objects.filter(slug=body["model"], kind=ModelKind.CHAT).first()
        target = provider_target(model) if model is not None and model.enabled else None
        if target is None or not model_allowed(model=model, user=user, api_key=api_key):
            raise GatewayError(
                404,
                "not_found",
                f"model: {body['model']} (GET /v1/models lists the models you can use)",
                param="model",
                code="model_not_found",
            )
        return model, target
    finally:
        connection_give_back()


async def count_tokens(request: HttpRequest) -> HttpResponse:
    try:
        body = _parse(request_body(request))
        model, target = await sync_to_async(_resolve, thread_sensitive=False)(request, body)
        if model.provider != Provider.ANTHROPIC:
            return json_response({"input_tokens": local_count(body)})
        forwarded = {key: body[key] for key in FORWARDED if key in body}
        try:
            tokens = await acount_tokens(
                api_key=target.api_key,
                base_url=target.base_url,
                timeout=settings.LLM_REQUEST_TIMEOUT,
                body={"model": target.model, **forwarded},
            )
        except ProviderError as exc:
            raise provider_error(exc) from None
    except GatewayError as error:
        return error_response(error)
    return json_response({"input_tokens": tokens})
