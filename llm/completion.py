"""The ``llm.completion`` job handler: one assistant reply, streamed from its provider.

Runs in RQ workers, possibly several at once in threads: it keeps no module state of its own,
refetches everything by id, and leaves connection cleanup to the job runner."""

import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.exceptions import PermanentJobError, TransientJobError
from jobs.models import Job, JobStatus
from jobs.services import job_cancel_requested
from llm import metrics, streams
from llm.catalog import provider_target, unavailable_reason
from llm.models import Message, MessageRole, MessageStatus
from llm.providers import (
    ChatMessage,
    ChatRequest,
    CompletionResult,
    ProviderError,
    completion_cost,
    get_provider,
    trim_messages,
)
from llm.services import usage_record

logger = logging.getLogger("parley.llm")
CANCEL_CHECK_SECONDS = 0.25


class ReplyCancelled(Exception):
    """Raised from the delta callback to stop reading the provider's stream."""


def _context(message: Message) -> list[ChatMessage]:
    """The turns before this reply: every user message and the replies that completed."""
    earlier = message.conversation.messages.filter(position__lt=message.position).filter(
        Q(role=MessageRole.USER) | Q(role=MessageRole.ASSISTANT, status=MessageStatus.COMPLETED)
    )
    return [ChatMessage(role=m.role, content=m.content) for m in earlier.order_by("position")]


def _serialized(message: Message) -> dict:
    from llm.api.serializers import MessageSerializer

    return dict(MessageSerializer(message).data)


def completion_run(job: Job) -> None:
    """Write the reply of ``job.payload["message_id"]``: publish each delta as it arrives,
    then store text, finish reason, tokens, cost and latency, and count usage once."""
    message = Message.objects.select_related("conversation", "model", "conversation__owner").get(
        pk=job.payload["message_id"]
    )
    if message.status not in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS):
        return  # already finished by an earlier attempt
    conversation, model = message.conversation, message.model
    target = provider_target(model)
    if target is None:
        raise PermanentJobError(unavailable_reason(model))

    restarting = message.status == MessageStatus.IN_PROGRESS or job.attempts > 1
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.IN_PROGRESS, content="")
    if restarting:
        streams.reply_publish(str(message.pk), "reset", {"attempt": job.attempts})

    max_tokens = conversation.max_tokens or min(
        model.max_output_tokens, settings.LLM_DEFAULT_MAX_TOKENS
    )
    request = ChatRequest(
        model=target.model,
        messages=trim_messages(
            system=conversation.system_prompt,
            messages=_context(message),
            context_window=model.context_window,
            max_tokens=max_tokens,
        ),
        system=conversation.system_prompt,
        max_tokens=max_tokens,
        temperature=float(conversation.temperature)
        if conversation.temperature is not None
        else None,
    )
    provider = get_provider(
        target.provider,
        api_key=target.api_key,
        base_url=target.base_url,
        timeout=settings.LLM_REQUEST_TIMEOUT,
    )

    parts: list[str] = []
    next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS

    def on_delta(text: str) -> None:
        nonlocal next_cancel_check
        parts.append(text)
        streams.reply_publish(str(message.pk), "delta", {"text": text})
        if time.monotonic() >= next_cancel_check:
            next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
            if job_cancel_requested(job.pk):
                raise ReplyCancelled

    labels = {"provider": model.provider, "model": model.slug}
    try:
        result = provider.complete(request, on_delta=on_delta)
    except ReplyCancelled:
        metrics.COMPLETIONS.labels(**labels, outcome="cancelled").inc()
        _keep_partial(message, "".join(parts))
        return
    except ProviderError as exc:
        _keep_partial(message, "".join(parts))
        if exc.transient:
            metrics.COMPLETIONS.labels(**labels, outcome="transient_error").inc()
            Message.objects.filter(pk=message.pk).update(status=MessageStatus.QUEUED)
            raise TransientJobError(str(exc), retry_after=exc.retry_after) from exc
        metrics.COMPLETIONS.labels(**labels, outcome="permanent_error").inc()
        raise PermanentJobError(str(exc)) from exc

    _store_result(message, result)
    metrics.COMPLETIONS.labels(**labels, outcome="completed").inc()
    metrics.INPUT_TOKENS.labels(**labels).inc(result.input_tokens)
    metrics.OUTPUT_TOKENS.labels(**labels).inc(result.output_tokens)
    metrics.COST.labels(**labels).inc(float(message.cost))
    metrics.DURATION.labels(**labels).observe(result.latency_ms / 1000)
    if result.time_to_first_token_ms is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(**labels).observe(result.time_to_first_token_ms / 1000)


def _keep_partial(message: Message, text: str) -> None:
    Message.objects.filter(pk=message.pk).update(content=text)


def _store_result(message: Message, result: CompletionResult) -> None:
    model = message.model
    with transaction.atomic():
        message.content = result.text
        message.finish_reason = result.finish_reason or ""
        message.input_tokens = result.input_tokens
        message.output_tokens = result.output_tokens
        message.cost = completion_cost(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            input_price_per_mtok=model.input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
        )
        message.latency_ms = result.latency_ms
        message.time_to_first_token_ms = result.time_to_first_token_ms
        message.provider_response_id = (result.response_id or "")[:128]
        message.status = MessageStatus.COMPLETED
        message.error = ""
        message.completed_at = timezone.now()
        message.save()
        usage_record(message=message, user=message.conversation.owner)
    streams.reply_publish(str(message.pk), "done", {"message": _serialized(message)})


def completion_finished(job: Job) -> None:
    """Terminal hook: whatever ended the job (failure, cancel, a dead worker), the reply says so
    and live readers get a final event."""
    message = Message.objects.filter(pk=job.payload.get("message_id")).first()
    if message is None or message.status == MessageStatus.COMPLETED:
        return
    if job.status == JobStatus.CANCELLED:
        message.status = MessageStatus.CANCELLED
        message.error = "Cancelled."
        # A killed work horse never saved its partial text; the live stream has it.
        message.content = message.content or streams.reply_text_so_far(str(message.pk))
    elif job.status == JobStatus.FAILED:
        message.status = MessageStatus.FAILED
        message.error = job.last_error or "The completion failed."
    else:
        return
    message.completed_at = timezone.now()
    message.save(update_fields=["status", "error", "content", "completed_at"])
    streams.reply_publish(
        str(message.pk),
        "error",
        {"code": message.status, "message": message.error, "message_object": _serialized(message)},
    )


def completion_requeued(job: Job) -> None:
    """Retry hook: a failed or cancelled reply is being written again."""
    Message.objects.filter(pk=job.payload.get("message_id")).update(
        status=MessageStatus.QUEUED, error="", completed_at=None
    )
