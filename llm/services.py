"""Writes for the llm app: conversations, posting a message (which queues a completion), and
recording a finished reply exactly once."""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from llm.catalog import provider_target
from llm.models import Conversation, LLMModel, Message, MessageRole, MessageStatus, Usage
from llm.selectors import model_get_available
from project.errors import Conflict, IdempotencyKeyReused, InvalidInput, NotAllowed

COMPLETION_JOB_KIND = "llm.completion"
COMPLETION_QUEUE = "completions"
ACTIVE_STATUSES = (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS)


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
) -> Conversation:
    """Change what was given; switching model re-checks that it can be called."""
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


def message_post(
    *, conversation: Conversation, content: str, idempotency_key: str | None = None
) -> PostedMessage:
    """Store the user's message, a queued assistant reply and its completion job in one
    transaction; the job is enqueued when the transaction commits.

    Refuses (without storing anything) when the conversation is archived, a reply is still
    being written, the model cannot be called, the message or conversation is over its limit,
    or the owner's monthly token budget is spent. The same ``idempotency_key`` with the same
    content returns the original result instead of a second completion."""
    owner = conversation.owner
    fingerprint = _request_fingerprint(conversation, content)
    if idempotency_key:
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request."
                )
            return _replay(existing)

    if len(content) > settings.LLM_MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"Message is {len(content)} characters; the limit is {settings.LLM_MAX_MESSAGE_CHARS}.",
            code="message_too_long",
            details={"content": [f"At most {settings.LLM_MAX_MESSAGE_CHARS} characters."]},
        )
    if conversation.archived:
        raise Conflict("The conversation is archived; unarchive it to continue.", code="archived")
    model = conversation.model
    if not model.enabled or provider_target(model) is None:
        model_get_available(slug=model.slug)  # raises the 400 that says why
    budget = user_budget(user=owner)
    if budget.exhausted:
        raise NotAllowed("Your monthly token budget is used up.", code="budget_exhausted")

    with transaction.atomic():
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
            owner=owner,
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
                    model=model,
                    job=job,
                ),
            ]
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return PostedMessage(user_message, assistant, job, created=True)


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


def conversations_purgeable(
    *, updated_before: datetime, owner: User | None = None, archived_only: bool = False
):
    """Conversations old enough to purge, never one with a reply still being written."""
    conversations = Conversation.objects.filter(updated_at__lt=updated_before).exclude(
        messages__status__in=ACTIVE_STATUSES
    )
    if owner is not None:
        conversations = conversations.filter(owner=owner)
    if archived_only:
        conversations = conversations.filter(archived=True)
    return conversations.order_by("pk")


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
