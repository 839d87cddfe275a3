"""The call flow every emulated API shares, for async views under the ASGI server:

1. ``call_open`` (one hop to a thread): authenticate, parse, find the catalog model, check
   the request can be carried to its provider, admit it (budgets, limits); then give the
   database connection back — nothing holds one while the provider is waited on.
2. ``call_complete`` / ``call_stream``: the provider call on the SDK's async client, so an
   open stream is a parked coroutine, not a thread.
3. ``call_finish`` (a second hop): the ``GatewayCall`` record, a ``Usage`` row, settling the
   admission, metrics — for every outcome, including a client that went away mid-stream.

Every refusal and failure is a ``GatewayError``, recorded before it is raised."""

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import ApiKey, User
from llm import metrics
from llm.admission import Admission, admission_release, admission_reserve, admission_settle
from llm.catalog import ProviderTarget, provider_target, unavailable_reason
from llm.compat.auth import caller_authenticate
from llm.compat.core import (
    ANTHROPIC,
    FORMAT_OF_PROVIDER,
    GatewayError,
    GatewayRequest,
    invalid,
    provider_error,
)
from llm.compat.metrics import GATEWAY_CALLS
from llm.models import GatewayCall, GatewayCallStatus, LLMModel, ModelKind, Usage
from llm.providers import (
    ChatRequest,
    CompletionResult,
    ProviderError,
    completion_cost,
    estimate_tokens,
    get_async_provider,
)
from llm.providers.context import PER_MESSAGE_OVERHEAD, REPLY_PRIMING
from project import errors as domain
from project.api.errors import status_for

logger = logging.getLogger("parley.llm.compat")
# Tasks that account for streams whose client went away: kept referenced until they finish.
_background: set[asyncio.Task] = set()

DOMAIN_KIND = {400: "invalid_request", 403: "permission", 404: "not_found", 429: "rate_limit"}


@dataclass(slots=True)
class Call:
    """One ``/v1/`` call from the moment its caller is known until it is recorded."""

    endpoint: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    user: User | None = None
    api_key: ApiKey | None = None
    request: GatewayRequest | None = None
    model: LLMModel | None = None
    target: ProviderTarget | None = None
    chat_request: ChatRequest | None = None
    admitted: Admission | None = None

    @property
    def provider_format(self) -> str:
        return FORMAT_OF_PROVIDER[self.model.provider]

    def headers(self) -> dict[str, str]:
        """Response headers: where the caller stands against their rate limits."""
        return self.admitted.headers() if self.admitted is not None else {}


def _give_back_connection() -> None:
    # Inside a test's transaction there is nothing to give back.
    if not connection.in_atomic_block:
        connection.close()


def prompt_tokens(request: GatewayRequest) -> int:
    tokens = REPLY_PRIMING + sum(
        estimate_tokens(m.content) + PER_MESSAGE_OVERHEAD for m in request.messages
    )
    return tokens + (
        estimate_tokens(request.system) + PER_MESSAGE_OVERHEAD if request.system else 0
    )


def call_refusal(error: domain.DomainError) -> GatewayError:
    """What a refusal by the domain (model access, rate limits, budgets) means to a client."""
    return _domain_refusal(error)


def _domain_refusal(error: domain.DomainError) -> GatewayError:
    status = status_for(error)
    return GatewayError(
        status,
        DOMAIN_KIND.get(status, "invalid_request"),
        error.message,
        code=error.code,
        retry_after=error.retry_after if status != 429 else (error.retry_after or 1),
    )


def _resolve(call: Call) -> None:
    """Find the model and build the provider request, or raise the 400/404 that says why."""
    request = call.request
    model = LLMModel.objects.filter(slug=request.model).first()
    target = provider_target(model) if model is not None and model.enabled else None
    if target is None:
        reason = f" ({unavailable_reason(model)})" if model is not None else ""
        raise GatewayError(
            404,
            "not_found",
            f"The model '{request.model}' does not exist or cannot be used{reason}. "
            "GET /v1/models lists the models you can use.",
            param="model",
            code="model_not_found",
        )
    call.model, call.target = model, target
    if model.kind != ModelKind.CHAT:
        raise invalid(
            f"'{model.slug}' is an embedding model: use it with /v1/embeddings.",
            param="model",
            code="model_not_chat",
        )
    provider_format = call.provider_format
    if request.passthrough and provider_format != request.wire_format:
        param = request.passthrough_param or next(iter(request.passthrough))
        raise invalid(
            f"'{param}' is passed through only to models whose provider speaks the "
            f"{request.wire_format} format; '{model.slug}' speaks the {provider_format} format.",
            param=param,
            code="unsupported_parameter",
        )
    if provider_format == ANTHROPIC and request.temperature is not None and request.temperature > 1:
        raise invalid(
            f"'temperature' may be at most 1 for '{model.slug}' (an Anthropic model).",
            param="temperature",
        )
    max_tokens = request.max_tokens
    if max_tokens is None:
        max_tokens = min(model.max_output_tokens, settings.LLM_DEFAULT_MAX_TOKENS)
    elif max_tokens > model.max_output_tokens:
        raise invalid(
            f"'{request.max_tokens_param}' may be at most {model.max_output_tokens} for "
            f"'{model.slug}'.",
            param=request.max_tokens_param,
        )
    prompt_size = prompt_tokens(request)
    if prompt_size + max_tokens > model.context_window:
        raise invalid(
            f"The messages (about {prompt_size} tokens) and '{request.max_tokens_param}' "
            f"({max_tokens}) exceed the context window of '{model.slug}' "
            f"({model.context_window} tokens).",
            param="messages",
            code="context_length_exceeded",
        )
    call.chat_request = ChatRequest(
        model=target.model,
        messages=request.messages,
        max_tokens=max_tokens,
        system=request.system,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        passthrough=request.passthrough,
    )
    try:  # model access, rate limits, budgets: the same gate as conversation replies
        call.admitted = admission_reserve(
            user=call.user,
            api_key=call.api_key,
            model=model,
            input_tokens_estimate=prompt_size,
            max_tokens=max_tokens,
            reference=f"gateway:{call.id}",
        )
    except domain.DomainError as exc:
        raise _domain_refusal(exc) from None


def _open(
    http_request: HttpRequest,
    call: Call,
    parse: Callable[[], GatewayRequest],
    x_api_key: bool,
    resolve: Callable[[Call], None],
) -> Call:
    try:
        call.user, call.api_key = caller_authenticate(http_request, x_api_key=x_api_key)
        http_request.user = call.user  # for the access log line
        try:
            call.request = parse()
            resolve(call)
        except GatewayError as error:
            _record(call, error=error)
            raise
        return call
    finally:
        _give_back_connection()


async def call_open(
    http_request: HttpRequest,
    *,
    endpoint: str,
    parse: Callable[[], GatewayRequest],
    x_api_key: bool = False,
    resolve: Callable[[Call], None] | None = None,
) -> Call:
    """Authenticate, parse (``parse`` raises ``GatewayError``), resolve and admit a call, in
    one trip to a thread that returns its database connection before coming back. ``resolve``
    (default: a chat call's) finds the model and admits the call, or raises ``GatewayError``."""
    call = Call(endpoint=endpoint, request_id=getattr(http_request, "id", ""))
    # Any pooled thread will do: the hop takes its own connection and gives it back.
    return await sync_to_async(_open, thread_sensitive=False)(
        http_request, call, parse, x_api_key, resolve or _resolve
    )


def _labels(call: Call) -> dict:
    return {"provider": call.model.provider, "model": call.model.slug}


def _record(
    call: Call,
    *,
    result: CompletionResult | None = None,
    error: GatewayError | None = None,
    partial_text: str = "",
    cancelled: bool = False,
) -> GatewayCall:
    """Store the call's record (and, when tokens were spent, its Usage row), settle its
    admission, and count it in the metrics. One transaction."""
    request = call.request
    input_tokens = output_tokens = cache_read = cache_write = 0
    if result is not None:
        input_tokens, output_tokens = result.input_tokens, result.output_tokens
        # Of the input tokens, those the provider's prompt cache served or stored.
        cache_read = getattr(result, "cache_read_tokens", 0)
        cache_write = getattr(result, "cache_write_tokens", 0)
    elif call.chat_request is not None and (cancelled or partial_text):
        # The provider billed what it streamed; its usage report never came: estimate.
        input_tokens, output_tokens = prompt_tokens(request), estimate_tokens(partial_text)
    cost = Decimal(0)
    if call.model is not None and (input_tokens or output_tokens):
        cost = completion_cost(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            input_price_per_mtok=call.model.input_price_per_mtok,
            output_price_per_mtok=call.model.output_price_per_mtok,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_read_price_per_mtok=call.model.cache_read_price_per_mtok,
            cache_write_price_per_mtok=call.model.cache_write_price_per_mtok,
        )
    if result is not None:
        status, http_status = GatewayCallStatus.COMPLETED, 200
    elif cancelled:
        status, http_status = GatewayCallStatus.CANCELLED, 499
    elif call.admitted is not None:  # it reached the provider
        status, http_status = GatewayCallStatus.FAILED, error.status
    else:
        status, http_status = GatewayCallStatus.REFUSED, error.status
    now = timezone.now()
    keep_text = settings.LLM_GATEWAY_STORE_TEXT
    record = GatewayCall(
        id=call.id,
        user=call.user,
        api_key=call.api_key,
        model=call.model,
        model_requested=(request.model if request else "")[:128],
        endpoint=call.endpoint,
        stream=bool(request and request.stream),
        status=status,
        http_status=http_status,
        error_code=(error.code or error.kind)[:64] if error else "",
        error=error.message[:2000] if error else "",
        finish_reason=result.finish_reason if result else "",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        latency_ms=round((time.perf_counter() - call.started) * 1000),
        time_to_first_token_ms=result.time_to_first_token_ms if result else None,
        request_id=call.request_id[:128],
        provider_response_id=(result.response_id if result else "")[:128],
        client_user=(request.client_user if request else "")[:256],
        metadata=request.metadata if request else None,
        prompt=_prompt_record(request) if keep_text and request else None,
        reply=(result.text if result else partial_text) if keep_text else "",
        created_at=now,
    )
    with transaction.atomic():
        if input_tokens or output_tokens:
            record.usage = Usage.objects.create(
                user=call.user,
                api_key=call.api_key,
                model=call.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                cost=cost,
                created_at=now,
            )
        record.save(force_insert=True)
        if call.admitted is not None:
            reservation = call.admitted.reservation
            if input_tokens or output_tokens:
                admission_settle(
                    reservation=reservation,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost=cost,
                )
            else:
                admission_release(reservation=reservation)
    model_label = call.model.slug if call.model is not None else "unknown"
    GATEWAY_CALLS.labels(endpoint=call.endpoint, model=model_label, status=status).inc()
    if call.admitted is not None:
        _count_provider_call(call, result, error, cost)
    return record


def _count_provider_call(
    call: Call, result: CompletionResult | None, error: GatewayError | None, cost: Decimal
) -> None:
    labels = _labels(call)
    if result is None:
        outcome = "cancelled" if error is None else "permanent_error"
        if error is not None and error.status in (429, 502, 503, 504):
            outcome = "transient_error"
        metrics.COMPLETIONS.labels(**labels, outcome=outcome).inc()
        return
    metrics.COMPLETIONS.labels(**labels, outcome="completed").inc()
    metrics.INPUT_TOKENS.labels(**labels).inc(result.input_tokens)
    metrics.OUTPUT_TOKENS.labels(**labels).inc(result.output_tokens)
    metrics.COST.labels(**labels).inc(float(cost))
    metrics.DURATION.labels(**labels).observe(result.latency_ms / 1000)
    if result.time_to_first_token_ms is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(**labels).observe(result.time_to_first_token_ms / 1000)


def _prompt_record(request: GatewayRequest) -> dict:
    return {
        "system": request.system,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }


def _finish(call: Call, **outcome) -> GatewayCall:
    try:
        return _record(call, **outcome)
    finally:
        _give_back_connection()


async def call_finish(call: Call, **outcome) -> None:
    """Record how the call ended (see ``_record``); never raises into the response."""
    try:
        await sync_to_async(_finish, thread_sensitive=False)(call, **outcome)
    except Exception:
        logger.exception("Could not record gateway call %s", call.id)


def _finish_quietly(call: Call, **outcome) -> None:
    try:
        _finish(call, **outcome)
    except Exception:
        logger.exception("Could not record gateway call %s", call.id)


def record_after_response(response: HttpResponse, call: Call, **outcome) -> HttpResponse:
    """Record the call (see ``_record``) once ``response`` has been sent: Django closes a
    response after sending its body, and the record is written as one of its closers — still
    part of the request, but off the client's path (its next request is not kept waiting)."""
    response._resource_closers.append(functools.partial(_finish_quietly, call, **outcome))
    return response


async def call_complete(call: Call) -> CompletionResult:
    """The whole reply (record it with ``record_after_response``); a provider failure is
    recorded and raised as GatewayError."""
    provider = _provider(call)
    try:
        return await provider.acomplete(call.chat_request)
    except ProviderError as exc:
        error = _provider_failure(call, exc)
        await call_finish(call, error=error)
        raise error from None


async def call_stream(call: Call) -> AsyncIterator[str | CompletionResult | GatewayError]:
    """Open the provider's stream and wait for its first piece, so that a failure before any
    text (a 429, a timeout) is still an ordinary error response (raised as GatewayError).
    Returns an iterator of text deltas ending with the recorded ``CompletionResult``, or with
    a ``GatewayError`` when the provider fails mid-stream."""
    events = _provider(call).astream(call.chat_request)
    try:
        first = await anext(events)
    except ProviderError as exc:
        error = _provider_failure(call, exc)
        await call_finish(call, error=error)
        raise error from None
    return _relay(call, first, events)


async def _relay(
    call: Call, first: str | CompletionResult, events: AsyncIterator
) -> AsyncIterator[str | CompletionResult | GatewayError]:
    parts: list[str] = []
    outcome: dict | None = None
    recorded = False
    try:
        item = first
        while True:
            if isinstance(item, CompletionResult):
                outcome = {"result": item}
                yield item
                break
            parts.append(item)
            yield item
            try:
                item = await anext(events)
            except ProviderError as exc:
                outcome = {"error": _provider_failure(call, exc), "partial_text": "".join(parts)}
                yield outcome["error"]
                break
        # The client has had the last event by now: account off its path. Shielded: a client
        # that hangs up at once must not cancel the record.
        recorded = True
        await asyncio.shield(_spawn(call_finish(call, **outcome)))
    finally:
        if not recorded:  # the client went away: close the provider's stream, then account
            outcome = outcome or {"partial_text": "".join(parts), "cancelled": True}
            _spawn(_account_abandoned(call, events, outcome))


def _spawn(coroutine) -> asyncio.Task:
    """Run ``coroutine`` to its end whatever happens to the request that started it."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _account_abandoned(call: Call, events, outcome: dict) -> None:
    try:
        await events.aclose()
    finally:
        await call_finish(call, **outcome)


def _provider(call: Call):
    target = call.target
    return get_async_provider(
        target.provider,
        api_key=target.api_key,
        base_url=target.base_url,
        timeout=settings.LLM_REQUEST_TIMEOUT,
    )


async def call_failed(call: Call, exc: ProviderError) -> GatewayError:
    """Record a provider's failure of ``call``; the error to answer the client with."""
    error = _provider_failure(call, exc)
    await call_finish(call, error=error)
    return error


def _provider_failure(call: Call, exc: ProviderError) -> GatewayError:
    error = provider_error(exc)
    logger.warning(
        "Provider failed a gateway call",
        extra={"model": call.model.slug, "status": error.status, "call_id": str(call.id)},
    )
    return error
