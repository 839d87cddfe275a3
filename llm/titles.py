"""Automatic conversation titles: the ``llm.title`` job kind.

A conversation started without a title gets one after its first reply, written by the small,
cheap catalog model named in ``LLM_TITLE_MODEL`` (unset: the feature is off). It runs as a job
of its own on the ``default`` queue, so it never delays a reply (workers take ``completions``
first); its tokens are counted as the conversation owner's usage; a failure leaves the title
empty; and a title is generated at most once per conversation (the job is created with a
per-conversation idempotency key) and never overwrites one the owner set meanwhile."""

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs.exceptions import PermanentJobError, TransientJobError
from jobs.models import Job
from jobs.services import job_create
from llm.catalog import model_is_callable, model_provider, unavailable_reason
from llm.models import Conversation, LLMModel, MessageRole, MessageStatus, Usage
from llm.providers import ChatMessage, ChatRequest, ProviderError, completion_cost_micros
from llm.selectors import message_branch
from project.errors import IdempotencyKeyReused

logger = logging.getLogger("parley.llm")

TITLE_JOB_KIND = "llm.title"
TITLE_QUEUE = "default"
TITLE_MAX_TOKENS = 24
TITLE_MAX_CHARS = 80
TITLE_INSTRUCTIONS = (
    "Write a short title (at most six words) for the conversation below. "
    "Reply with the title only: no quotes, no final period."
)


def conversation_title_request(*, conversation: Conversation) -> Job | None:
    """Queue the title of an untitled conversation, once (call it in the transaction that
    stores a completed reply). None when titles are off, the conversation has a title, or
    its title was already requested."""
    if not settings.LLM_TITLE_MODEL or conversation.title:
        return None
    try:
        job, created = job_create(
            kind=TITLE_JOB_KIND,
            owner=conversation.owner,
            payload={"conversation_id": str(conversation.pk)},
            queue=TITLE_QUEUE,
            # Unique per owner in the database: a conversation's title job exists at most once.
            idempotency_key=f"llm.title:{conversation.pk}",
            request_fingerprint=TITLE_JOB_KIND,
        )
    except IdempotencyKeyReused:  # the owner used this very key for a request of theirs
        return None
    return job if created else None


def _first_turn(conversation: Conversation) -> str:
    messages = message_branch(conversation=conversation)
    lines = []
    for message in messages[:2]:
        if message.role == MessageRole.USER or message.status == MessageStatus.COMPLETED:
            lines.append(f"{message.role}: {message.content[:2000]}")
    return "\n\n".join(lines)


def _clean(text: str) -> str:
    title = " ".join(text.split()).strip(" \"'`*#.")
    return title[:TITLE_MAX_CHARS].rstrip()


def title_run(job: Job) -> None:
    """Write the title of ``job.payload["conversation_id"]`` with LLM_TITLE_MODEL and count
    its usage, together; nothing when the conversation has a title by now."""
    conversation = (
        Conversation.objects.select_related("owner")
        .filter(pk=job.payload["conversation_id"])
        .first()
    )
    if conversation is None or conversation.title:
        return
    model = LLMModel.objects.filter(slug=settings.LLM_TITLE_MODEL).first()
    if model is None:
        raise PermanentJobError(
            f"LLM_TITLE_MODEL '{settings.LLM_TITLE_MODEL}' is not in the catalog."
        )
    if not model_is_callable(model):
        raise PermanentJobError(unavailable_reason(model))
    request = ChatRequest(
        model=model.provider_model,
        messages=[ChatMessage(role=MessageRole.USER, content=_first_turn(conversation))],
        system=TITLE_INSTRUCTIONS,
        max_tokens=min(TITLE_MAX_TOKENS, model.max_output_tokens),
        temperature=0.2,
    )
    provider = model_provider(model)
    if not connection.in_atomic_block:
        connection.close()  # no connection held while the provider answers
    try:
        result = provider.complete(request)
    except ProviderError as exc:
        if exc.transient:
            raise TransientJobError(str(exc), retry_after=exc.retry_after) from exc
        raise PermanentJobError(str(exc)) from exc
    title = _clean(result.text)
    if not title:
        raise PermanentJobError("The model wrote an empty title.")
    with transaction.atomic():
        # Conditional: an owner's own title (set while this ran) wins, and a retried job
        # that already wrote the title counts nothing twice.
        if not Conversation.objects.filter(pk=conversation.pk, title="").update(title=title):
            return
        Usage.objects.create(
            user=conversation.owner,
            model=model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_micros=completion_cost_micros(
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                input_price_per_mtok=model.input_price_per_mtok,
                output_price_per_mtok=model.output_price_per_mtok,
            ),
            created_at=timezone.now(),
        )
