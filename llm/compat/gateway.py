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
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import ApiKey, User
from llm import lifecycle
from llm.admission import Admission
from llm.catalog import ProviderTarget, provider_target, unavailable_reason
from llm.compat.auth import caller_authenticate
from llm.compat.core import (
    FORMAT_OF_PROVIDER,
    GatewayError,
    GatewayRequest,
    domain_refusal,
    invalid,
    provider_error,
)
from llm.compat.metrics import GATEWAY_CALLS
from llm.lifecycle import (
    GATEWAY,
    CallPolicy,
    Spent,
    call_account,
    call_admit,
    estimated_usage,
)
from llm.models import GatewayCall, GatewayCallStatus, LLMModel, ModelKind
from llm.providers import (
    ChatRequest,
    CompletionResult,
    ProviderError,
    UnsupportedFeature,
    request_check,
)
from llm.selectors import model_by_slug
from project import errors as domain
from project.db import connection_give_back
from teams.models import Team
from teams.selectors import TEAM_HEADER, team_for_call

logger = logging.getLogger("parley.llm.compat")
# Tasks that account for streams whose client went away: kept referenced until they finish.
_background: set[asyncio.Task] = set()

FAMILY_NAME = {"openai": "OpenAI", "anthropic": "Anthropic"}


@dataclass(slots=True)
class Call:
    """One ``/v1/`` call from the moment its caller is known until it is recorded."""

    endpoint: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    user: User | None = None
    api_key: ApiKey | None = None
    team: Team | None = None  # the team the call is charged to
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


def prompt_tokens(request: GatewayRequest) -> int:
    """Estimated input tokens (the lifecycle's one estimate; it reads messages and system)."""
    return lifecycle.prompt_estimate(request)


def model_resolve(slug: str) -> tuple[LLMModel, ProviderTarget]:
    """The catalog model ``slug`` and where to call it, or the 404 that says why not (every
    ``/v1/`` endpoint that names a model)."""
    model = model_by_slug(slug=slug)
    target = provider_target(model) if model is not None and model.enabled else None
    if target is None:
        reason = f" ({unavailable_reason(model)})" if model is not None else ""
        raise GatewayError(
            404,
            "not_found",
            f"The model '{slug}' does not exist or cannot be used{reason}. "
            "GET /v1/models lists the models you can use.",
            param="model",
            code="model_not_found",
        )
    return model, target


def chat_model_resolve(slug: str) -> tuple[LLMModel, ProviderTarget]:
    """``model_resolve`` for an endpoint that writes replies: an embedding model is a 400."""
    model, target = model_resolve(slug)
    if model.kind != ModelKind.CHAT:
        raise invalid(
            f"'{model.slug}' is an embedding model: use it with /v1/embeddings.",
            param="model",
            code="model_not_chat",
        )
    return model, target


def provider_check(model: LLMModel, request: ChatRequest) -> None:
    """The 400 naming the client's field when ``model``'s provider format cannot carry what
    ``request`` asks for (checked before anything is reserved or stored)."""
    try:
        request_check(model.provider, request)
    except UnsupportedFeature as exc:
        family = FAMILY_NAME[FORMAT_OF_PROVIDER[model.provider]]
        raise invalid(
            f"{exc.message} ('{model.slug}' is an {family} model.)",
            param=exc.param,
            code="unsupported_parameter",
        ) from None


def _resolve(call: Call) -> None:
    """Find the model and build the provider request, or raise the 400/404 that says why."""
    request = call.request
    model, target = chat_model_resolve(request.model)
    call.model, call.target = model, target
    provider_format = call.provider_format
    if request.passthrough and provider_format != request.wire_format:
        param = request.passthrough_param or next(iter(request.passthrough))
        raise invalid(
            f"'{param}' is passed through only to models whose provider speaks the "
            f"{request.wire_format} format; '{model.slug}' speaks the {provider_format} format.",
            param=param,
            code="unsupported_parameter",
        )
    problem = lifecycle.temperature_problem(model, request.temperature)
    if problem:  # refused on every path (conversations too), never clamped
        raise invalid(problem, param="temperature")
    max_tokens = lifecycle.max_tokens_ceiling(model, request.max_tokens)
    if max_tokens is None:
        max_tokens = min(model.max_output_tokens, settings.LLM_DEFAULT_MAX_TOKENS)
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
        # Hints of the client's format go to a provider of that format, and nowhere else.
        passthrough={**request.hints, **request.passthrough}
        if provider_format == request.wire_format
        else {},
        **request.options,
    )
    provider_check(model, call.chat_request)  # before anything is reserved
    call_gate(call, GATEWAY, input_tokens_estimate=prompt_size, max_tokens=max_tokens)


def call_gate(
    call: Call, policy: CallPolicy, *, input_tokens_estimate: int, max_tokens: int
) -> None:
    """Admit ``call`` (its model resolved) by the lifecycle's one gate — model access, rate
    limits, budgets, as conversation replies — or raise the 4xx that says why not."""
    try:
        call.admitted = call_admit(
            policy,
            user=call.user,
            api_key=call.api_key,
            model=call.model,
            input_tokens_estimate=input_tokens_estimate,
            max_tokens=max_tokens,
            reference=f"gateway:{call.id}" if policy.reserves else "",
            team=call.team,
        )
    except domain.DomainError as exc:
        raise domain_refusal(exc) from None


def _open(
    http_request: HttpRequest,
    call: Call,
    parse: Callable[[], GatewayRequest],
    x_api_key: bool,
    resolve: Callable[[Call], None],
    record: bool,
) -> Call:
    try:
        call.user, call.api_key = caller_authenticate(http_request, x_api_key=x_api_key)
        http_request.user = call.user  # for the access log line
        try:
            try:
                call.team = team_for_call(
                    user=call.user,
                    api_key=call.api_key,
                    requested=http_request.headers.get(TEAM_HEADER),
                )
            except domain.DomainError as exc:
                raise domain_refusal(exc) from None
            call.request = parse()
            resolve(call)
        except GatewayError as error:
            if record:
                _record(call, error=error)
            raise
        return call
    finally:
        connection_give_back()


async def call_open(
    http_request: HttpRequest,
    *,
    endpoint: str,
    parse: Callable[[], GatewayRequest],
    x_api_key: bool = False,
    resolve: Callable[[Call], None] | None = None,
    record: bool = True,
) -> Call:
    """Authenticate, parse (``parse`` raises ``GatewayError``), resolve and admit a call, in
    one trip to a thread that returns its database connection before coming back. ``resolve``
    (default: a chat call's) finds the model and admits the call, or raises ``GatewayError``.
    ``record`` False: a refusal leaves no ``GatewayCall`` (token counts keep no record)."""
    call = Call(endpoint=endpoint, request_id=getattr(http_request, "id", ""))
    # Any pooled thread will do: the hop takes its own connection and gives it back.
    return await sync_to_async(_open, thread_sensitive=False)(
        http_request, call, parse, x_api_key, resolve or _resolve, record
    )


def _record(
    call: Call,
    *,
    result: CompletionResult | None = None,
    error: GatewayError | None = None,
    partial_text: str = "",
    cancelled: bool = False,
) -> GatewayCall:
    """Account the call through the lifecycle (``llm.lifecycle.call_account``): its record,
    its Usage row when tokens were spent, its admission settled or released, the metrics."""
    request = call.request
    input_tokens = output_tokens = cache_read = cache_write = 0
    if result is not None:
        input_tokens, output_tokens = result.input_tokens, result.output_tokens
        # Of the input tokens, those the provider's prompt cache served or stored.
        cache_read, cache_write = result.cache_read_tokens, result.cache_write_tokens
    elif cancelled or partial_text:
        # The provider billed what it streamed; its usage report never came: estimated, as
        # for a cancelled reply (llm.lifecycle.estimated_usage).
        input_tokens, output_tokens = estimated_usage(call.chat_request, partial_text)
    if result is not None:
        status, http_status = GatewayCallStatus.COMPLETED, 200
    elif cancelled:
        status, http_status = GatewayCallStatus.CANCELLED, 499
    elif call.admitted is not None:  # it reached the provider
        status, http_status = GatewayCallStatus.FAILED, error.status
    else:
        status, http_status = GatewayCallStatus.REFUSED, error.status
    keep_text = settings.LLM_GATEWAY_STORE_TEXT
    record = GatewayCall(
        id=call.id,
        user=call.user,
        api_key=call.api_key,
        team=call.team,
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
        latency_ms=round((time.perf_counter() - call.started) * 1000),
        time_to_first_token_ms=result.time_to_first_token_ms if result else None,
        request_id=call.request_id[:128],
        provider_response_id=(result.response_id if result else "")[:128],
        client_user=(request.client_user if request else "")[:256],
        metadata=request.metadata if request else None,
        prompt=_prompt_record(request) if keep_text and request else None,
        reply=(result.text if result else partial_text) if keep_text else "",
        created_at=timezone.now(),
    )
    if result is not None:
        outcome = "completed"
    elif error is None:
        outcome = "cancelled"
    else:
        outcome = "transient_error" if error.status in (429, 502, 503, 504) else "permanent_error"
    call_account(
        Spent(
            policy=GATEWAY,
            user=call.user,
            model=call.model if call.admitted is not None else None,
            outcome=outcome,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            api_key_id=call.api_key.pk if call.api_key else None,
            team_id=call.team.pk if call.team else None,
            reservation=call.admitted.reservation if call.admitted is not None else None,
            record=record,
            latency_ms=result.latency_ms if result else None,
            time_to_first_token_ms=result.time_to_first_token_ms if result else None,
        )
    )
    model_label = call.model.slug if call.model is not None else "unknown"
    GATEWAY_CALLS.labels(endpoint=call.endpoint, model=model_label, status=status).inc()
    return record


def _prompt_record(request: GatewayRequest) -> dict:
    return {
        "system": request.system,
        "messages": [{"role": m.role, "content": m.text} for m in request.messages],
    }


def _finish(call: Call, **outcome) -> GatewayCall:
    try:
        return _record(call, **outcome)
    finally:
        connection_give_back()


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
    recorded and raised as GatewayError. Transient failures are tried again and fall back as
    the GATEWAY policy says (``_attempt``)."""
    return await _attempt(call, lambda provider: provider.acomplete(call.chat_request))


async def call_stream(call: Call) -> AsyncIterator[str | CompletionResult | GatewayError]:
    """Open the provider's stream and wait for its first piece, so that a failure before any
    text (a 429, a timeout) is still an ordinary error response (raised as GatewayError) — and
    can still be tried again or fall back. Returns an iterator of text deltas ending with the
    recorded ``CompletionResult``, or with a ``GatewayError`` when the provider fails
    mid-stream (not tried again: the client has text already)."""
    streams: list = []

    async def open_stream(provider):
        events = provider.astream(call.chat_request)
        streams.append(events)
        return await anext(events)

    first = await _attempt(call, open_stream)
    return _relay(call, first, streams[-1])


async def _attempt(call: Call, start):
    """``start(provider)`` on the call's model, tried again after a transient failure
    (``attempts_per_model``, waiting the provider's Retry-After up to a cap) and then on each
    usable fallback, until one succeeds; else the last failure, recorded and raised. Nothing
    has reached the client before this returns."""
    fallbacks = None
    tried = 0
    while True:
        try:
            return await start(lifecycle.provider_for(call.target, is_async=True))
        except ProviderError as exc:
            tried += 1
            if exc.transient and tried < GATEWAY.attempts_per_model:
                lifecycle.attempt_failed(call.model, exc)
                await asyncio.sleep(lifecycle.retry_wait(GATEWAY, exc))
                continue
            if exc.transient and fallbacks is None:
                fallbacks = await sync_to_async(_fallbacks, thread_sensitive=False)(call)
            if exc.transient and fallbacks:
                lifecycle.attempt_failed(call.model, exc)
                _fall_back(call, *fallbacks.pop(0))
                tried = 0
                continue
            error = _provider_failure(call, exc)
            await call_finish(call, error=error)
            raise error from None


def _fallbacks(call: Call) -> list[tuple[LLMModel, ProviderTarget]]:
    request = call.request

    def usable(model: LLMModel) -> bool:
        # The request must mean the same thing to the fallback: same wire format for
        # passed-through fields, a temperature it takes, a prompt that fits its window.
        if request.passthrough and FORMAT_OF_PROVIDER[model.provider] != call.provider_format:
            return False
        if lifecycle.temperature_problem(model, request.temperature):
            return False
        max_tokens = min(call.chat_request.max_tokens, model.max_output_tokens)
        return prompt_tokens(request) + max_tokens <= model.context_window

    try:
        return lifecycle.fallback_targets(GATEWAY, call.model, usable=usable)
    finally:
        connection_give_back()


def _fall_back(call: Call, model: LLMModel, target: ProviderTarget) -> None:
    logger.info(
        "Gateway call falls back to another model",
        extra={"call_id": str(call.id), "from_model": call.model.slug, "to": model.slug},
    )
    call.model, call.target = model, target
    call.chat_request = dataclasses.replace(
        call.chat_request,
        model=target.model,
        max_tokens=min(call.chat_request.max_tokens, model.max_output_tokens),
    )


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
            if isinstance(item, str):
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
