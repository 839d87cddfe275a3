"""The ``llm.completion`` job handler: one assistant reply, streamed from its provider.

Runs in RQ workers, possibly many at once in threads: it keeps no module state of its own,
refetches everything by id, and leaves connection cleanup to the job runner. Its shape is
claim, release, stream, store: the database connection goes back to the pool before the
provider is called, because a reply takes seconds to minutes and the connection would sit
idle all that time."""

import logging

import redis
from django.db import transaction

from jobs.exceptions import (
    JobCancelled,
    JobInterrupted,
    JobStopped,
    PermanentJobError,
    TransientJobError,
)
from jobs.models import Job, JobStatus
from jobs.runner import job_watchdog
from llm import lifecycle, streams
from llm.admission import reply_max_tokens, reply_reference, reply_reservation_ensure
from llm.catalog import model_is_callable, unavailable_reason
from llm.lifecycle import REPLY, Spent, call_account, call_cost, estimated_usage
from llm.models import GatewayCall, GatewayCallStatus, Message, MessageRole, MessageStatus
from llm.providers import (
    ChatMessage,
    ChatProvider,
    ChatRequest,
    CompletionResult,
    ProviderError,
    UnsupportedFeature,
    request_check,
    trim_messages,
)
from llm.providers.canonical import StreamEvent, ToolCallDelta, ToolCallStart
from llm.providers.canonical_json import options_load, parts_load, reply_parts
from llm.selectors import message_path
from llm.services import message_transition, reply_fall_back
from llm.titles import conversation_title_request
from project.db import connection_give_back
from project.errors import BudgetExceeded, InvalidTransition, NotAllowed

logger = logging.getLogger("parley.llm")


def completion_run(job: Job) -> None:
    """Write the reply of ``job.payload["message_id"]``: publish each delta as it arrives,
    then store text, finish reason, tokens, cost and latency, and count usage once."""
    message = _reply_to_write(job)
    if message is None:
        return
    request, provider = _build_request(message, job.payload.get("params"))
    _reservation_ensure(message, job, request.max_tokens)
    _start_attempt(message, job)
    _release_database_connection()
    result = _stream_reply(message, job, request, provider)
    if result is not None:
        _store_result(message, result, job)


def _reservation_ensure(message: Message, job: Job, max_tokens: int) -> None:
    """The reply's worst case must be held before the provider is called: it was reserved at
    POST, but a manual retry of a failed reply (settled then) reserves again here."""
    try:
        reply_reservation_ensure(job=job, message=message, max_tokens=max_tokens)
    except (BudgetExceeded, NotAllowed) as exc:
        raise PermanentJobError(exc.message) from exc


def _reply_to_write(job: Job) -> Message | None:
    """The reply this job writes, or None when an earlier attempt already finished it."""
    message = (
        Message.objects.select_related("conversation", "model", "conversation__owner")
        .filter(pk=job.payload["message_id"])
        .first()
    )
    if message is None:
        raise PermanentJobError("The conversation was deleted.")
    if message.status not in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS):
        return None
    if not model_is_callable(message.model):
        raise PermanentJobError(unavailable_reason(message.model))
    return message


def _context(message: Message) -> list[ChatMessage]:
    """The turns this reply answers: its branch from the root to its parent (never another
    branch's text), user messages and the replies that completed, each with its parts (images,
    tool calls and results) when it has them."""
    path = message_path(message=message)[:-1]
    return [
        ChatMessage(role=m.role, content=m.content, parts=parts_load(m.parts))
        for m in path
        if m.role == MessageRole.USER or m.status == MessageStatus.COMPLETED
    ]


def _build_request(
    message: Message, params: dict | None = None
) -> tuple[ChatRequest, ChatProvider]:
    """The provider request for the reply: its branch trimmed to the model's window, with the
    reply's own ``params`` (from a regenerate or a stored response) over the conversation's,
    and the tools, output format and instructions it was asked with (``call_options``)."""
    conversation, model = message.conversation, message.model
    params = params or {}
    asked = message.call_options or {}
    system = asked.get("system", conversation.system_prompt)
    # The same rule admission reserved for (a fallback model may allow fewer tokens).
    max_tokens = reply_max_tokens(conversation=conversation, model=model, params=params)
    temperature = params.get("temperature", conversation.temperature)
    problem = lifecycle.temperature_problem(model, temperature)
    if problem:  # refused on every path, never clamped (a fallback may be Anthropic)
        raise PermanentJobError(problem)
    request = ChatRequest(
        model=model.provider_model,
        messages=trim_messages(
            system=system,
            messages=_context(message),
            context_window=model.context_window,
            max_tokens=max_tokens,
        ),
        system=system,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        **options_load(asked),
    )
    try:  # checked when posted; a fallback model of the other family may not carry it
        request_check(model.provider, request)
    except UnsupportedFeature as exc:
        raise PermanentJobError(f"{exc.message} ('{model.slug}' cannot take it.)") from exc
    return request, lifecycle.model_provider(model)


def _start_attempt(message: Message, job: Job) -> None:
    """Mark the reply in progress with empty text; a retry tells live readers to start over."""
    restarting = message.status == MessageStatus.IN_PROGRESS or job.attempts > 1
    message_transition(message=message, to=MessageStatus.IN_PROGRESS, content="")
    if restarting:
        _tell_readers(message, "reset", {"attempt": job.attempts})


def _release_database_connection() -> None:
    # Back to the pool (or closed) while the provider streams.
    connection_give_back()


def _stream_reply(
    message: Message, job: Job, request: ChatRequest, provider: ChatProvider
) -> CompletionResult | None:
    """Stream the reply from the provider, publishing deltas (coalesced, streams.ReplyDeltas)
    and stopping within 0.25 s of a cancel, the job's time limit or worker shutdown while
    tokens arrive (jobs.runner.Watchdog). None when cancelled (the partial text is kept);
    provider failures become the job's transient or permanent errors."""
    parts: list[str] = []
    deltas = streams.ReplyDeltas(str(message.pk))
    watchdog = job_watchdog(job)

    def on_delta(text: str) -> None:
        parts.append(text)
        deltas.add(text)
        watchdog.check()

    def on_event(event: StreamEvent) -> None:
        if isinstance(event, ToolCallStart):
            deltas.tool_call(index=event.index, id=event.id, name=event.name)
        elif isinstance(event, ToolCallDelta):
            deltas.tool_arguments(index=event.index, fragment=event.arguments)
        watchdog.check()

    try:
        return provider.complete(request, on_delta=on_delta, on_event=on_event)
    except JobStopped as stop:
        Message.objects.filter(pk=message.pk).update(content="".join(parts))
        if isinstance(stop, JobCancelled):
            return None  # accounted by the terminal hook (completion_finished), like any cancel
        if isinstance(stop, JobInterrupted):  # handed back: the next attempt starts over
            _transition_unless_moved_on(message, MessageStatus.QUEUED)
        raise
    except ProviderError as exc:
        Message.objects.filter(pk=message.pk).update(content="".join(parts))
        if exc.transient:
            lifecycle.attempt_failed(message.model, exc)
            _transition_unless_moved_on(message, MessageStatus.QUEUED)
            raise TransientJobError(str(exc), retry_after=exc.retry_after) from exc
        lifecycle.attempt_failed(message.model, exc)
        raise PermanentJobError(str(exc)) from exc
    finally:
        deltas.flush()  # before any final event


def _store_result(message: Message, result: CompletionResult, job: Job) -> None:
    """Store the finished reply and account it through the lifecycle (its Usage row, its
    reservation settled to the actual cost, the metrics, the call record of a stored
    response), together; then tell live readers. A settle the database refuses fails the job
    (the terminal hook ends the reply and its hold)."""
    try:
        with transaction.atomic():
            _record_completed(message, result, team_id=job.payload.get("team_id"))
            call_account(
                Spent(
                    policy=REPLY,
                    user=message.conversation.owner,
                    model=message.model,
                    outcome="completed",
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    cache_read_tokens=result.cache_read_tokens,
                    cache_write_tokens=result.cache_write_tokens,
                    api_key_id=job.payload.get("api_key_id"),
                    team_id=job.payload.get("team_id"),
                    reference=reply_reference(job.pk),
                    message=message,
                    record=_call_record(job, message),
                    latency_ms=result.latency_ms,
                    time_to_first_token_ms=result.time_to_first_token_ms,
                ),
                strict=True,
            )
    except InvalidTransition:  # cancelled in the last instant: the cancel stands
        logger.info("Reply finished after it was cancelled", extra={"message_id": str(message.pk)})
        return
    _tell_readers(message, "done", {"message": streams.message_snapshot(message)})


def _call_record(job: Job, message: Message) -> GatewayCall | None:
    """The ``/v1/`` call record of a reply posted as a stored response (``payload["call"]``),
    as the reply stands now; None for a conversation reply."""
    call = job.payload.get("call")
    if not call:
        return None
    status = {
        MessageStatus.COMPLETED: (GatewayCallStatus.COMPLETED, 200),
        MessageStatus.CANCELLED: (GatewayCallStatus.CANCELLED, 499),
    }.get(message.status, (GatewayCallStatus.FAILED, 502))
    conversation = message.conversation
    return GatewayCall(
        user_id=conversation.owner_id,
        api_key_id=job.payload.get("api_key_id"),
        team_id=job.payload.get("team_id"),
        model=message.model,
        model_requested=call.get("model_requested", "")[:128],
        endpoint=call.get("endpoint", ""),
        stream=bool(call.get("stream")),
        status=status[0],
        http_status=status[1],
        error_code="" if status[1] == 200 else message.status,
        error=(message.error or "")[:2000],
        finish_reason=message.finish_reason or "",
        input_tokens=message.input_tokens or 0,
        output_tokens=message.output_tokens or 0,
        latency_ms=message.latency_ms or 0,
        time_to_first_token_ms=message.time_to_first_token_ms,
        request_id=call.get("request_id", "")[:128],
        provider_response_id=message.provider_response_id or "",
        client_user=call.get("client_user", "")[:256],
        metadata=call.get("metadata"),
        created_at=message.completed_at or message.created_at,
    )


def _tell_readers(message: Message, event: str, data: dict) -> None:
    # The stored reply is the record; a live event lost while Redis restarts must not fail
    # a reply that is already written (readers fall back to the stored message).
    try:
        streams.reply_publish(str(message.pk), event, data)
    except redis.RedisError as exc:
        logger.warning(
            "Live %s event not published: %s",
            event,
            type(exc).__name__,
            extra={"message_id": str(message.pk)},
        )


def _record_completed(
    message: Message, result: CompletionResult, *, team_id: int | None = None
) -> None:
    message_transition(
        message=message,
        to=MessageStatus.COMPLETED,
        content=result.text,
        parts=reply_parts(result.text, result.tool_calls),
        finish_reason=result.finish_reason or "",
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_micros=call_cost(
            message.model,
            result.input_tokens,
            result.output_tokens,
            cache_read_tokens=result.cache_read_tokens,
            cache_write_tokens=result.cache_write_tokens,
        ),
        latency_ms=result.latency_ms,
        time_to_first_token_ms=result.time_to_first_token_ms,
        provider_response_id=(result.response_id or "")[:128],
        error="",
    )
    # In the same transaction: the title job exists only if the reply was stored.
    conversation_title_request(conversation=message.conversation, team_id=team_id)


def _transition_unless_moved_on(message: Message, to: str, **fields) -> bool:
    """``message_transition``, or False when someone else moved the reply on meanwhile."""
    try:
        message_transition(message=message, to=to, **fields)
    except InvalidTransition:
        return False
    return True


def completion_finished(job: Job) -> None:
    """Terminal hook: whatever ended the job (failure, cancel, a dead worker, a settle the
    database refused), the reply says so first, live readers get a final event, and then the
    reply is accounted through the lifecycle — its hold always ends."""
    message = (
        Message.objects.select_related("conversation__owner", "model")
        .filter(pk=job.payload.get("message_id"))
        .first()
    )
    reference = reply_reference(job.pk)
    if message is None:
        lifecycle.hold_end(reference=reference)
        return
    if message.status == MessageStatus.COMPLETED:
        lifecycle.hold_end(reference=reference, **_completed_spend(message))
        return
    was_writing = message.status == MessageStatus.IN_PROGRESS
    if job.status == JobStatus.CANCELLED:
        # A killed worker never saved its partial text; the live stream has it.
        content = message.content or streams.reply_text_so_far(str(message.pk))
        moved = _transition_unless_moved_on(
            message, MessageStatus.CANCELLED, error="Cancelled.", content=content
        )
    elif job.status == JobStatus.FAILED:
        error = job.last_error or "The completion failed."
        moved = _transition_unless_moved_on(message, MessageStatus.FAILED, error=error)
    else:
        lifecycle.hold_end(reference=reference)
        return
    if moved:
        _account_unfinished(job, message, cancelled=was_writing and job.status == "cancelled")
        _tell_readers(
            message,
            "error",
            {
                "code": message.status,
                "message": message.error,
                "message_object": streams.message_snapshot(message),
            },
        )
    else:
        lifecycle.hold_end(reference=reference)


def _completed_spend(message: Message) -> dict:
    return {
        "cost_micros": message.cost_micros or 0,
        "tokens": (message.input_tokens or 0) + (message.output_tokens or 0),
    }


def _account_unfinished(job: Job, message: Message, *, cancelled: bool) -> None:
    """A reply that ended without the provider's usage report: charged like an abandoned
    ``/v1/`` stream — the prompt's estimate and the text produced when it was cancelled while
    being written or failed after text arrived; nothing when no text came and nothing was
    cancelled mid-call (llm.lifecycle.estimated_usage)."""
    input_tokens = output_tokens = 0
    if message.model is not None and (cancelled or message.content):
        try:
            request, _ = _build_request(message, job.payload.get("params"))
        except PermanentJobError:
            request = None
        input_tokens, output_tokens = estimated_usage(request, message.content)
    if input_tokens or output_tokens:
        cost = call_cost(message.model, input_tokens, output_tokens)
        Message.objects.filter(pk=message.pk).update(
            input_tokens=input_tokens, output_tokens=output_tokens, cost_micros=cost
        )
        message.input_tokens, message.output_tokens, message.cost_micros = (
            input_tokens,
            output_tokens,
            cost,
        )
    charged = bool(input_tokens or output_tokens)
    call_account(
        Spent(
            policy=REPLY,
            user=message.conversation.owner,
            # No model: nothing was charged and the provider call (if any) is counted already.
            model=message.model if charged or cancelled else None,
            outcome="cancelled" if cancelled else "",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            api_key_id=job.payload.get("api_key_id"),
            team_id=job.payload.get("team_id"),
            reference=reply_reference(job.pk),
            message=message,
            record=_call_record(job, message),
        )
    )


def completion_exhausted(job: Job) -> str | None:
    """Attempts hook: transient errors used up the attempts on the reply's model. Move the
    reply to the next fallback model of the model first asked for (the job then gets fresh
    attempts), or None to let it fail. Permanent errors never get here."""
    message = Message.objects.filter(pk=job.payload.get("message_id")).first()
    if message is None or message.model_id is None:
        return None
    requested = job.payload.get("requested_model_id", message.model_id)
    failing = message.model_id
    fallback = reply_fall_back(reply=message, requested_model_id=requested)
    if fallback is None:
        return None
    job.payload = {**job.payload, "requested_model_id": requested}
    logger.info(
        "Reply falls back to another model",
        extra={"message_id": str(message.pk), "from_model": failing, "to": fallback.slug},
    )
    return f"falling back to model '{fallback.slug}'"


def completion_requeued(job: Job) -> None:
    """Retry hook: a failed or cancelled reply is being written again."""
    message = Message.objects.filter(pk=job.payload.get("message_id")).first()
    if message is not None:
        _transition_unless_moved_on(message, MessageStatus.QUEUED, error="")


def completion_retry_blocker(job: Job) -> str | None:
    """Retry check: a reply whose message (or conversation) was deleted cannot be written."""
    if not Message.objects.filter(pk=job.payload.get("message_id")).exists():
        return "The conversation was deleted; there is no reply to write."
    return None
