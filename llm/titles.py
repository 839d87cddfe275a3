"""Automatic conversation titles: the ``llm.title`` job kind.

A conversation started without a title gets one after its first reply, written by the small,
cheap catalog model named in ``LLM_TITLE_MODEL`` (unset: the feature is off). It runs as a job
of its own on the ``default`` queue, so it never delays a reply (workers take ``completions``
first); its tokens are counted as the conversation owner's usage; a failure leaves the title
empty; and a title is generated at most once per conversation (the job is created with a
per-conversation idempotency key) and never overwrites one the owner set meanwhile.

A title is a provider call like any other (``llm.lifecycle``, policy TITLE): admitted against
the owner's rate limits and budgets before it is made (a budget that cannot cover it means no
title), then its Usage row and its settled reservation are written together — so budgets and
the usage report agree, and titles can never spend past a budget."""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from jobs.exceptions import PermanentJobError, TransientJobError
from jobs.models import Job
from jobs.services import job_create
from llm import lifecycle
from llm.admission import reply_reference
from llm.catalog import model_is_callable, unavailable_reason
from llm.lifecycle import TITLE, Spent, call_account, call_admit
from llm.models import Conversation, LLMModel, MessageRole, MessageStatus
from llm.providers import ChatMessage, ChatRequest, ProviderError
from llm.selectors import message_branch
from project.db import connection_give_back
from project.errors import BudgetExceeded, IdempotencyKeyReused, NotAllowed, RateLimited
from teams.models import Team

logger = logging.getLogger("parley.llm")

TITLE_JOB_KIND = "llm.title"
TITLE_QUEUE = "default"
TITLE_MAX_TOKENS = 24
TITLE_MAX_CHARS = 80
TITLE_INSTRUCTIONS = (
    "Write a short title (at most six words) for the conversation below. "
    "Reply with the title only: no quotes, no final period."
)


def conversation_title_request(
    *, conversation: Conversation, team_id: int | None = None
) -> Job | None:
    """Queue the title of an untitled conversation, once (call it in the transaction that
    stores a completed reply), charged to ``team_id`` (the reply's team). None when titles are
    off, the conversation has a title, or its title was already requested."""
    if not settings.LLM_TITLE_MODEL or conversation.title:
        return None
    try:
        job, created = job_create(
            kind=TITLE_JOB_KIND,
            owner=conversation.owner,
            payload={"conversation_id": str(conversation.pk)}
            | ({"team_id": team_id} if team_id else {}),
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
    reference = reply_reference(job.pk)  # reconcile ends the hold if this job vanishes
    # The reply's team pays for its title, unless its owner has left the team since.
    team_id = job.payload.get("team_id")
    team = (
        Team.objects.filter(pk=team_id)
        .filter(
            Q(memberships__user_id=conversation.owner_id) | Q(service_user_id=conversation.owner_id)
        )
        .first()
        if team_id
        else None
    )
    try:
        admitted = call_admit(
            TITLE,
            user=conversation.owner,
            api_key=None,
            model=model,
            input_tokens_estimate=lifecycle.prompt_estimate(request),
            max_tokens=request.max_tokens,
            reference=reference,
            team=team,
        )
    except RateLimited as exc:
        raise TransientJobError(exc.message, retry_after=exc.retry_after) from exc
    except (BudgetExceeded, NotAllowed) as exc:
        raise PermanentJobError(f"No title: {exc.message}") from exc
    spent = Spent(
        policy=TITLE,
        user=conversation.owner,
        model=model,
        outcome="completed",
        reservation=admitted.reservation,
        team_id=team.pk if team else None,
    )
    provider = lifecycle.model_provider(model)
    connection_give_back()  # no connection held while the provider answers
    try:
        result = provider.complete(request)
    except ProviderError as exc:
        lifecycle.attempt_failed(model, exc)
        spent.outcome = ""
        call_account(spent)  # nothing produced: the hold is released
        if exc.transient:
            raise TransientJobError(str(exc), retry_after=exc.retry_after) from exc
        raise PermanentJobError(str(exc)) from exc
    spent.input_tokens, spent.output_tokens = result.input_tokens, result.output_tokens
    spent.latency_ms, spent.time_to_first_token_ms = (
        result.latency_ms,
        result.time_to_first_token_ms,
    )
    title = _clean(result.text)
    with transaction.atomic():
        # The tokens were spent whatever becomes of the title: counted and settled with it.
        call_account(spent)
        if title:  # conditional: an owner's own title (set while this ran) wins
            Conversation.objects.filter(pk=conversation.pk, title="").update(title=title)
    if not title:
        raise PermanentJobError("The model wrote an empty title.")
