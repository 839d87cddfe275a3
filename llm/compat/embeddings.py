"""``POST /v1/embeddings`` in OpenAI's format, for the catalog's embedding models: admitted
(model access, rate limits, budgets), priced at the model's input price, and recorded (a
``GatewayCall`` and a ``Usage`` row) like every ``/v1/`` call, through ``gateway.py``. The
provider's vectors go back as it sent them (floats, or base64 when the client asked)."""

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from llm.compat.core import (
    OPENAI,
    GatewayError,
    GatewayRequest,
    invalid,
    parse_json_object,
)
from llm.compat.gateway import (
    Call,
    call_failed,
    call_gate,
    call_open,
    model_resolve,
    record_after_response,
)
from llm.compat.http import json_response, request_body
from llm.compat.openai_chat import error_response
from llm.lifecycle import GATEWAY
from llm.models import GatewayEndpoint, ModelKind, Provider
from llm.providers import CompletionResult, ProviderError, estimate_tokens
from llm.providers.endpoints import aembed

MAX_INPUTS = 2048  # OpenAI's limit per request


def _inputs(value) -> list:
    """The inputs as a list of strings or of token arrays, or a 400 saying what is wrong."""
    message = (
        "'input' must be a non-empty string, an array of non-empty strings, an array of "
        "tokens, or an array of token arrays."
    )

    def tokens(item) -> bool:
        return (
            isinstance(item, list)
            and bool(item)
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
        )

    if isinstance(value, str) and value:
        return [value]
    if tokens(value):
        return [value]
    if isinstance(value, list) and value:
        if len(value) > MAX_INPUTS:
            raise invalid(f"'input' may hold at most {MAX_INPUTS} items.", param="input")
        if all(isinstance(item, str) and item for item in value) or all(map(tokens, value)):
            return value
    raise invalid(message, param="input")


def embeddings_request_parse(body: dict) -> GatewayRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required.", param="model")
    forwarded = {"input": _inputs(body.get("input"))}
    encoding = body.get("encoding_format")
    if encoding is not None:
        if encoding not in ("float", "base64"):
            raise invalid("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
        forwarded["encoding_format"] = encoding
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise invalid("'dimensions' must be a positive integer.", param="dimensions")
        forwarded["dimensions"] = dimensions
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise invalid("'user' must be a string of at most 256 characters.", param="user")
    return GatewayRequest(
        endpoint=GatewayEndpoint.EMBEDDINGS,
        wire_format=OPENAI,
        model=model,
        messages=[],
        client_user=user or "",
        passthrough=forwarded,
    )


def input_tokens_estimate(inputs: list) -> list[int]:
    """Each input's tokens: a token array's length, or the estimate for a string."""
    return [len(item) if isinstance(item, list) else estimate_tokens(item) for item in inputs]


def embeddings_resolve(call: Call) -> None:
    """Find the embedding model and admit the call, or raise the 4xx that says why."""
    request = call.request
    model, target = model_resolve(request.model)
    if model.kind != ModelKind.EMBEDDING or model.provider == Provider.ANTHROPIC:
        raise invalid(
            f"'{model.slug}' is not an embedding model; /v1/embeddings needs one.",
            param="model",
            code="model_not_embedding",
        )
    call.model, call.target = model, target
    sizes = input_tokens_estimate(request.passthrough["input"])
    if max(sizes) > model.context_window:
        raise invalid(
            f"An input is about {max(sizes)} tokens; '{model.slug}' takes at most "
            f"{model.context_window} per input.",
            param="input",
            code="context_length_exceeded",
        )
    call_gate(call, GATEWAY, input_tokens_estimate=sum(sizes), max_tokens=0)


async def embeddings(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        call = await call_open(
            request,
            endpoint=GatewayEndpoint.EMBEDDINGS,
            parse=lambda: embeddings_request_parse(parse_json_object(raw)),
            resolve=embeddings_resolve,
        )
        started = time.perf_counter()
        try:
            answer = await aembed(
                api_key=call.target.api_key,
                base_url=call.target.base_url,
                timeout=settings.LLM_REQUEST_TIMEOUT,
                body={"model": call.target.model, **call.request.passthrough},
            )
        except ProviderError as exc:
            raise await call_failed(call, exc) from None
    except GatewayError as error:
        return error_response(error)
    usage = answer.get("usage") or {}
    tokens = usage.get("prompt_tokens")
    if not isinstance(tokens, int) or tokens < 0:  # no usage report: charge the estimate
        tokens = sum(input_tokens_estimate(call.request.passthrough["input"]))
    result = CompletionResult(
        text="",
        finish_reason="",
        input_tokens=tokens,
        output_tokens=0,
        response_id="",
        time_to_first_token_ms=None,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )
    body = {
        "object": "list",
        "data": answer["data"],
        "model": call.model.slug,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return record_after_response(json_response(body, headers=call.headers()), call, result=result)
