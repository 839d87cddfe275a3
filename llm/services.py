"""Writes for the llm app: conversations, posting a message (which queues a completion), the
one function that changes a reply's status, and recording a finished reply exactly once."""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from accounts.models import User
from accounts.quotas import user_budget
from jobs.models import Job
from jobs.services import job_cancel, job_create
from llm.models import (
    ACTIVE_STATUSES,
    MESSAGE_TRANSITIONS,
    Conversation,
    LLMModel,
    Message,
    MessageRole,
    MessageStatus,
    Usage,
)
from llm.selectors import model_check_callable, model_get_available
from project.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
)

COMPLETION_JOB_KIND = "llm.completion"
COMPLETION_QUEUE = "completions"


def _params_fields(params: dict[str, Any] | None, model: LLMModel) -> dict[str, Any]:
    params = params or {}
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and max_tokens > model.max_output_tokens:
        raise InvalidInput(
            f"max_tokens may be at most {model.max_output_tokens} for model '{model.slug}'.",
            code="max_tokens_too_large",
            details={"params": {"max_tokens": [f"At most {model.max_output_tokens}."]}},
        )
    temperature = params.get("temperature")
    return {
        "temperature": Decimal(str(temperature)) if temperature is not None else None,
        "max_tokens": max_tokens,
    }


def conversation_create(
    *,
    owner: User,
    model_slug: str,
    title: str = "",
    system_prompt: str = "",
    params: dict[str, Any] | None = None,
) -> Conversation:
    """A new conversation on a model that can be called now (else 400 saying why)."""
    model = model_get_available(slug=model_slug)
    return Conversation.objects.create(
        owner=owner,
        model=model,
        title=title,
        system_prompt=system_prompt,
        **_params_fields(params, model),
    )


def conversation_update(
    *,
    conversation: Conversation,
    title: str | None = None,
    model_slug: str | None = None,
    system_prompt: str | None = None,
    params: dict[str, Any] | None = None,
    archived: bool | None = None,
    save: bool = True,
) -> Conversation:
    """Change what was given; switching model re-checks that it can be called. With
    ``save=False`` only the rules run (``InvalidInput`` when one fails) and nothing is stored."""
    if model_slug is not None and model_slug != conversation.model.slug:
        conversation.model = model_get_available(slug=model_slug)
    if params is not None:
        current = {"temperature": conversation.temperature, "max_tokens": conversation.max_tokens}
        merged = current | params
        if merged["temperature"] is not None:
            merged["temperature"] = float(merged["temperature"])
        for name, value in _params_fields(merged, conversation.model).items():
            setattr(conversation, name, value)
    elif model_slug is not None:
        _params_fields({"max_tokens": conversation.max_tokens}, conversation.model)
    if title is not None:
        conversation.title = title
    if system_prompt is not None:
        conversation.system_prompt = system_prompt
    if archived is not None:
        conversation.archived = archived
    if save:
        conversation.save()
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation, first stopping any reply still being written for it."""
    jobs = Job.objects.filter(
        pk__in=conversation.messages.filter(status__in=ACTIVE_STATUSES).values("job_id")
    )
    for job in jobs:
        job_cancel(job=job)
    conversation.delete()


@dataclass(frozen=True, slots=True)
class PostedMessage:
    user_message: Message
    assistant_message: Message
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier request


def _request_fingerprint(conversation: Conversation, content: str) -> str:
    body = json.dumps({"conversation": str(conversation.pk), "content": content}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(job: Job) -> PostedMessage:
    assistant = Message.objects.get(pk=job.payload["message_id"])
    user_message = Message.objects.get(pk=job.payload["user_message_id"])
    return PostedMessage(user_message, assistant, job, created=False)


def _check_can_post(*, conversation: Conversation, content: str) -> None:
    """Every rule a new message must pass before anything is stored (the per-conversation
    ones that need the row lock are checked again in ``_create_turn``)."""
    limit = settings.LLM_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise InvalidInput(
            f"Message is {len(content)} characters; the limit is {limit}.",
            code="message_too_long",
            details={"content": [f"At most {limit} characters."]},
        )
    if conversation.archived:
        raise Conflict("The conversation is archived; unarchive it to continue.", code="archived")
    model_check_callable(model=conversation.model)
    if user_budget(user=conversation.owner).exhausted:
        raise NotAllowed("Your monthly token budget is used up.", code="budget_exhausted")


def _create_turn(
    *, conversation: Conversation, content: str, idempotency_key: str | None, fingerprint: str
) -> PostedMessage:
    """Store the user message, the queued reply and its job, in the caller's transaction."""
    # Locking the conversation serialises posts to it, so positions never collide.
    Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
    state = conversation.messages.aggregate(
        last=Max("position"), active=Count("pk", filter=Q(status__in=ACTIVE_STATUSES))
    )
    if state["active"]:
        raise Conflict(
            "A reply is still being written; wait for it or cancel its job.",
            code="reply_in_progress",
        )
    last = state["last"] or 0
    if last + 2 > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise InvalidInput(
            f"The conversation has reached {settings.LLM_MAX_MESSAGES_PER_CONVERSATION} "
            "messages; start a new one.",
            code="conversation_full",
        )
    user_message_id, assistant_id = uuid.uuid4(), uuid.uuid4()
    job, created = job_create(
        kind=COMPLETION_JOB_KIND,
        owner=conversation.owner,
        payload={"message_id": str(assistant_id), "user_message_id": str(user_message_id)},
        queue=COMPLETION_QUEUE,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
    )
    if not created:  # lost a race with the same Idempotency-Key
        return _replay(job)
    user_message, assistant = Message.objects.bulk_create(
        [
            Message(
                id=user_message_id,
                conversation=conversation,
                position=last + 1,
                role=MessageRole.USER,
                content=content,
            ),
            Message(
                id=assistant_id,
                conversation=conversation,
                position=last + 2,
                role=MessageRole.ASSISTANT,
                status=MessageStatus.QUEUED,
                model=conversation.model,
                job=job,
            ),
        ]
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return PostedMessage(user_message, assistant, job, created=True)


def message_post(
    *, conversation: Conversation, content: str, idempotency_key: str | None = None
) -> PostedMessage:
    """Store the user's message, a queued assistant reply and its completion job in one
    transaction; the job is enqueued when the transaction commits.

    Refuses (without storing anything) when the conversation is archived, a reply is still
    being written, the model cannot be called, the message or conversation is over its limit,
    or the owner's monthly token budget is spent. The same ``idempotency_key`` with the same
    content returns the original result instead of a second completion."""
    fingerprint = _request_fingerprint(conversation, content)
    if idempotency_key:
        existing = Job.objects.filter(
            owner=conversation.owner, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request."
                )
            return _replay(existing)
    _check_can_post(conversation=conversation, content=content)
    with transaction.atomic():
        return _create_turn(
            conversation=conversation,
            content=content,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )


def message_transition(*, message: Message, to: str, **fields: Any) -> Message:
    """Move a reply from the status it has in memory to ``to``, writing ``fields`` with it.

    The only writer of ``Message.status``. The UPDATE is conditional on the stored status, so
    of two racing writers (a worker finishing, a cancel) exactly one wins; the other gets
    ``InvalidTransition``. Allowed moves: ``MESSAGE_TRANSITIONS``."""
    if to not in MESSAGE_TRANSITIONS[message.status]:
        raise InvalidTransition(f"A {message.status} reply cannot become {to}.")
    if to in (MessageStatus.COMPLETED, MessageStatus.FAILED, MessageStatus.CANCELLED):
        fields.setdefault("completed_at", timezone.now())
    elif to == MessageStatus.QUEUED:
        fields.setdefault("completed_at", None)
    updated = Message.objects.filter(pk=message.pk, status=message.status).update(
        status=to, **fields
    )
    if not updated:
        current = Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
        raise InvalidTransition(f"The reply is {current} now; it cannot become {to}.")
    message.status = to
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def usage_record(*, message: Message, user: User) -> Usage:
    """Count a completed reply's usage exactly once, however many attempts it took."""
    usage, _ = Usage.objects.get_or_create(
        message=message,
        defaults={
            "user": user,
            "model": message.model,
            "input_tokens": message.input_tokens or 0,
            "output_tokens": message.output_tokens or 0,
            "cost": message.cost or Decimal(0),
            "created_at": message.completed_at or timezone.now(),
        },
    )
    return usage


@dataclass(frozen=True, slots=True)
class PurgeResult:
    conversations: int
    messages: int


def conversations_purge(
    *, conversations, batch_size: int = 500, on_batch: Callable[[int], object] | None = None
) -> PurgeResult:
    """Delete ``conversations`` in batches of ``batch_size`` (short transactions, bounded
    memory). Usage rows stay, with their message link set to null."""
    deleted_conversations = deleted_messages = 0
    while True:
        batch = list(conversations.values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        with transaction.atomic():
            _, counts = Conversation.objects.filter(pk__in=batch).delete()
        deleted_conversations += counts.get("llm.Conversation", 0)
        deleted_messages += counts.get("llm.Message", 0)
        if on_batch:
            on_batch(len(batch))
    return PurgeResult(deleted_conversations, deleted_messages)
