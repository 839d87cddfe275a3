"""Writes for the llm app: conversations, posting a message (which queues a completion), the
one function that changes a reply's status, and recording a finished reply exactly once."""

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from accounts.models import ApiKey, User
from jobs.models import Job
from jobs.services import job_cancel, job_create
from llm.access import model_access_check
from llm.admission import (
    conversation_input_estimate,
    reply_max_tokens,
    reply_reference,
)
from llm.catalog import model_is_callable
from llm.lifecycle import REPLY, call_admit, temperature_problem
from llm.models import (
    ACTIVE_STATUSES,
    MESSAGE_TRANSITIONS,
    Conversation,
    LLMModel,
    Message,
    MessageRole,
    MessageStatus,
)
from llm.selectors import (
    message_branch_leaf,
    message_tree,
    model_check_callable,
    model_fallback_ids,
    model_get_available,
)
from project.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTransition,
)
from teams.models import Team

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
    _temperature_check(model, temperature)
    return {
        "temperature": Decimal(str(temperature)) if temperature is not None else None,
        "max_tokens": max_tokens,
    }


def _temperature_check(model: LLMModel, temperature) -> None:
    # The lifecycle's rule, the same as on /v1/: refused, never clamped.
    problem = temperature_problem(model, temperature)
    if problem:
        raise InvalidInput(
            problem.replace("'temperature'", "temperature"),
            code="temperature_out_of_range",
            details={"params": {"temperature": ["At most 1 for this model."]}},
        )


def conversation_create(
    *,
    owner: User,
    model_slug: str,
    title: str = "",
    system_prompt: str = "",
    params: dict[str, Any] | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
) -> Conversation:
    """A new conversation on a model that can be called now (else 400 saying why) and that
    the owner (and the request's API key) may use (else 403 ``model_not_allowed``)."""
    model = model_get_available(slug=model_slug)
    model_access_check(model=model, user=owner, api_key=api_key, team=team)
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
    current_leaf: str | uuid.UUID | None = None,
    save: bool = True,
    api_key: ApiKey | None = None,
    team: Team | None = None,
) -> Conversation:
    """Change what was given; switching model re-checks that it can be called. With
    ``save=False`` only the rules run (``InvalidInput`` when one fails) and nothing is stored.

    ``current_leaf`` switches branch: any message of this conversation (else
    ``InvalidInput``), followed down its newest replies to a leaf. Only the given fields are
    written, so an edit never undoes a turn posted meanwhile."""
    if current_leaf is not None:
        tree = message_tree(conversation=conversation)
        conversation.current_leaf_id = message_branch_leaf(
            conversation=conversation, tree=tree, message_id=current_leaf
        )
    if model_slug is not None and model_slug != conversation.model.slug:
        conversation.model = model_get_available(slug=model_slug)
        model_access_check(
            model=conversation.model, user=conversation.owner, api_key=api_key, team=team
        )
    if params is not None:
        current = {"temperature": conversation.temperature, "max_tokens": conversation.max_tokens}
        merged = current | params
        if merged["temperature"] is not None:
            merged["temperature"] = float(merged["temperature"])
        for name, value in _params_fields(merged, conversation.model).items():
            setattr(conversation, name, value)
    elif model_slug is not None:
        _params_fields(
            {"max_tokens": conversation.max_tokens, "temperature": conversation.temperature},
            conversation.model,
        )
    if title is not None:
        conversation.title = title
    if system_prompt is not None:
        conversation.system_prompt = system_prompt
    if archived is not None:
        conversation.archived = archived
    if save:
        changed = {
            "model": model_slug,
            "temperature": params,
            "max_tokens": params,
            "title": title,
            "system_prompt": system_prompt,
            "archived": archived,
            "current_leaf": current_leaf,
        }
        fields = [name for name, given in changed.items() if given is not None]
        conversation.save(update_fields=[*fields, "updated_at"])
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
class Turn:
    """A turn as a client sent it: its role, its text, and its canonical parts as JSON when it
    is more than text (images, tool calls, tool results: llm.providers.canonical_json)."""

    role: str
    content: str
    parts: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PostedMessage:
    user_message: Message
    assistant_message: Message
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier request
    # OpenAI's x-ratelimit-* headers for the caller's standing (empty: no limits, or replayed)
    rate_limit_headers: dict[str, str] = field(default_factory=dict)


def _request_fingerprint(conversation: Conversation, content: str, **request: Any) -> str:
    body = {"conversation": str(conversation.pk), "content": content, **request}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replay(job: Job) -> PostedMessage:
    assistant = Message.objects.get(pk=job.payload["message_id"])
    user_message = Message.objects.get(pk=job.payload["user_message_id"])
    return PostedMessage(user_message, assistant, job, created=False)


def _replay_if_repeated(
    *, conversation: Conversation, idempotency_key: str | None, fingerprint: str
) -> PostedMessage | None:
    """The original result when ``idempotency_key`` was used before for the same request;
    ``IdempotencyKeyReused`` when it was used for another one."""
    if not idempotency_key:
        return None
    existing = Job.objects.filter(owner=conversation.owner, idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request."
        )
    return _replay(existing)


def _check_can_post(
    *,
    conversation: Conversation,
    content: str,
    model: LLMModel | None = None,
    history: Sequence[Turn] = (),
) -> None:
    """Every rule a new turn must pass before anything is stored (the per-conversation
    ones that need the row lock are checked again in ``_create_turn``). ``model`` is the one
    that will write the reply (default: the conversation's)."""
    limit = settings.LLM_MAX_MESSAGE_CHARS
    for text in (content, *(turn.content for turn in history)):
        if len(text) > limit:
            raise InvalidInput(
                f"Message is {len(text)} characters; the limit is {limit}.",
                code="message_too_long",
                details={"content": [f"At most {limit} characters."]},
            )
    if conversation.archived:
        raise Conflict("The conversation is archived; unarchive it to continue.", code="archived")
    model_check_callable(model=model or conversation.model)


def _structured_size(parts: list | None, history: Sequence[Turn], options: dict | None) -> str:
    """The JSON of a new turn's parts, its history's and its reply's options (tool schemas):
    what the input estimate counts beside the text. Empty for a turn of text alone."""
    structured = [p for p in (parts, *(t.parts for t in history), options) if p]
    return json.dumps(structured) if structured else ""


def _create_turn(
    *,
    conversation: Conversation,
    idempotency_key: str | None,
    fingerprint: str,
    content: str | None = None,
    replaces: Message | None = None,
    answer: Message | None = None,
    model: LLMModel | None = None,
    params: dict[str, Any] | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    call: dict | None = None,
    parts: list | None = None,
    history: Sequence[Turn] = (),
    options: dict | None = None,
) -> PostedMessage:
    """Store a turn and its queued reply's job, in the caller's transaction, and make the
    reply the conversation's current leaf, once admission (model access, rate limits, the
    worst case reserved against every budget: llm.admission) lets the reply in; a refusal
    rolls everything back. The turn is one of:

    * ``content``: a new user message after the current leaf (posting), or, with
      ``replaces``, beside that user message (editing), and a reply to it;
    * ``answer``: only a new reply to that existing user message (regenerating).

    The reply is written by ``model`` (default: the conversation's) with ``params``
    (temperature, max_tokens) overriding the conversation's for this reply only. A posted
    turn may carry ``parts`` (its whole content when more than text), follow ``history`` (turns
    stored before it, as a client that sends a whole exchange at once has them) and ask its
    reply for ``options`` (``Message.call_options``)."""
    # Locking the conversation serialises turns on it: positions never collide, one reply
    # at a time, and the current leaf read here is the one the new message follows.
    current_leaf_id = (
        Conversation.objects.select_for_update()
        .filter(pk=conversation.pk)
        .values_list("current_leaf_id", flat=True)
        .first()
    )
    state = conversation.messages.aggregate(
        last=Max("position"), active=Count("pk", filter=Q(status__in=ACTIVE_STATUSES))
    )
    if state["active"]:
        raise Conflict(
            "A reply is still being written; wait for it or cancel its job.",
            code="reply_in_progress",
        )
    last = state["last"] or 0
    adding = 1 if answer is not None else 2 + len(history)
    if last + adding > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise InvalidInput(
            f"The conversation has reached {settings.LLM_MAX_MESSAGES_PER_CONVERSATION} "
            "messages; start a new one.",
            code="conversation_full",
        )
    user_message_id = answer.pk if answer is not None else uuid.uuid4()
    assistant_id = uuid.uuid4()
    payload = {"message_id": str(assistant_id), "user_message_id": str(user_message_id)}
    if params:
        payload["params"] = params
    if api_key is not None:
        payload["api_key_id"] = api_key.pk  # the worker records usage per key
    if team is not None:
        payload["team_id"] = team.pk  # and per team, and re-reserves against it on retry
    if call:
        payload["call"] = call  # recorded as a /v1/ call when the reply ends
    job, created = job_create(
        kind=COMPLETION_JOB_KIND,
        owner=conversation.owner,
        payload=payload,
        queue=COMPLETION_QUEUE,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
    )
    if not created:  # lost a race with the same Idempotency-Key
        return _replay(job)
    reply_model = model or conversation.model
    _temperature_check(reply_model, (params or {}).get("temperature", conversation.temperature))
    admission = call_admit(
        REPLY,
        user=conversation.owner,
        api_key=api_key,
        model=reply_model,
        input_tokens_estimate=conversation_input_estimate(
            conversation=conversation,
            content="\n".join([*(turn.content for turn in history), content or ""]),
            extra=_structured_size(parts, history, options),
        ),
        max_tokens=reply_max_tokens(conversation=conversation, model=reply_model, params=params),
        reference=reply_reference(job.pk),  # the worker settles it when the reply ends
        team=team,
    )
    rows = []
    parent_id = replaces.parent_id if replaces is not None else current_leaf_id
    for turn in history:
        rows.append(
            Message(
                id=uuid.uuid4(),
                conversation=conversation,
                position=last + len(rows) + 1,
                parent_id=parent_id,
                role=turn.role,
                content=turn.content,
                parts=turn.parts,
            )
        )
        parent_id = rows[-1].id
    if answer is None:
        rows.append(
            Message(
                id=user_message_id,
                conversation=conversation,
                position=last + len(rows) + 1,
                parent_id=parent_id,
                role=MessageRole.USER,
                content=content or "",
                parts=parts or [],
            )
        )
    rows.append(
        Message(
            id=assistant_id,
            conversation=conversation,
            position=last + adding,
            parent_id=user_message_id,
            role=MessageRole.ASSISTANT,
            status=MessageStatus.QUEUED,
            model=model or conversation.model,
            job=job,
            call_options=options or {},
        )
    )
    created_rows = Message.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now(), current_leaf_id=assistant_id
    )
    conversation.current_leaf_id = assistant_id
    user_message = answer if answer is not None else created_rows[-2]
    return PostedMessage(
        user_message,
        created_rows[-1],
        job,
        created=True,
        rate_limit_headers=admission.headers(),
    )


def _queue_turn(
    *,
    conversation: Conversation,
    fingerprint: str,
    idempotency_key: str | None,
    api_key: ApiKey | None,
    team: Team | None = None,
    content: str | None = None,
    model: LLMModel | None = None,
    **turn: Any,
) -> PostedMessage:
    """The one way a turn is queued (post, regenerate, edit): replay a repeated request, check
    every rule, then store the turn and its reply's job in one transaction."""
    replayed = _replay_if_repeated(
        conversation=conversation, idempotency_key=idempotency_key, fingerprint=fingerprint
    )
    if replayed is not None:
        return replayed
    _check_can_post(
        conversation=conversation,
        content=content or "",
        model=model,
        history=turn.get("history", ()),
    )
    with transaction.atomic():
        return _create_turn(
            conversation=conversation,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            content=content,
            model=model,
            api_key=api_key,
            team=team,
            **turn,
        )


def message_post(
    *,
    conversation: Conversation,
    content: str,
    idempotency_key: str | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    call: dict | None = None,
    parts: list | None = None,
    history: Sequence[Turn] = (),
    options: dict | None = None,
    model: LLMModel | None = None,
    params: dict[str, Any] | None = None,
) -> PostedMessage:
    """Store the user's message (after the conversation's current leaf), a queued assistant
    reply and its completion job in one transaction; the job is enqueued when the transaction
    commits.

    Refuses (without storing anything) when the conversation is archived, a reply is still
    being written, the model cannot be called or is not allowed to the owner or ``api_key``
    (the key the request was made with), the message or conversation is over its limit, a
    rate limit is reached, or a budget cannot cover the reply's worst case. The same
    ``idempotency_key`` with the same content returns the original result instead of a second
    completion. ``call``: the ``/v1/`` call the reply answers (a stored response: endpoint,
    request id, stream, model asked for), recorded as a ``GatewayCall`` when the reply ends.

    What a client of the Responses API may add: ``parts`` (the message's whole content when
    it is more than text), ``history`` (turns stored before it, in order), ``options`` (what the
    reply is asked with: ``Message.call_options``), and a ``model`` and ``params`` for this
    reply only (as ``message_regenerate`` takes them)."""
    model = model if model is not None and model.pk != conversation.model_id else None
    return _queue_turn(
        conversation=conversation,
        fingerprint=_request_fingerprint(
            conversation,
            content,
            parts=parts,
            history=[(t.role, t.content, t.parts) for t in history],
            options=options,
            model=model.slug if model else None,
            params=params,
        ),
        idempotency_key=idempotency_key,
        api_key=api_key,
        team=team,
        content=content,
        call=call,
        parts=parts,
        history=history,
        options=options,
        model=model,
        params=_reply_params(params, model or conversation.model),
    )


def _reply_params(params: dict[str, Any] | None, model: LLMModel) -> dict[str, Any] | None:
    """Per-reply parameters, checked against the model that writes the reply; JSON for the
    job's payload."""
    if not params:
        return None
    _params_fields(params, model)
    return {name: value for name, value in params.items() if value is not None} or None


def message_regenerate(
    *,
    reply: Message,
    model_slug: str | None = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
) -> PostedMessage:
    """Queue a new reply to the user message ``reply`` answered, beside ``reply`` (which is
    kept), and make it the current leaf. ``model_slug`` and ``params`` apply to the new reply
    only. Every rule of ``message_post`` holds (one reply at a time, model, budget,
    idempotency)."""
    conversation = reply.conversation
    if reply.role != MessageRole.ASSISTANT or reply.parent_id is None:
        raise InvalidInput("Only an assistant reply can be regenerated.", code="not_a_reply")
    fingerprint = _request_fingerprint(
        conversation, "", regenerate=str(reply.pk), model=model_slug, params=params
    )
    model = model_get_available(slug=model_slug) if model_slug else conversation.model
    return _queue_turn(
        conversation=conversation,
        fingerprint=fingerprint,
        idempotency_key=idempotency_key,
        api_key=api_key,
        team=team,
        model=model,
        answer=Message.objects.get(pk=reply.parent_id),
        params=_reply_params(params, model),
        options=reply.call_options or None,  # the same tools and output format as before
    )


def message_edit(
    *,
    message: Message,
    content: str,
    idempotency_key: str | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
) -> PostedMessage:
    """Store ``content`` as a new user message beside ``message`` (same parent; the original
    and its branch are kept), queue its reply and make that the current leaf. Every rule of
    ``message_post`` holds."""
    conversation = message.conversation
    if message.role != MessageRole.USER:
        raise InvalidInput("Only a user message can be edited.", code="not_a_user_message")
    fingerprint = _request_fingerprint(conversation, content, edit=str(message.pk))
    return _queue_turn(
        conversation=conversation,
        fingerprint=fingerprint,
        idempotency_key=idempotency_key,
        api_key=api_key,
        team=team,
        content=content,
        replaces=message,
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


def reply_fall_back(*, reply: Message, requested_model_id: int) -> LLMModel | None:
    """Move a reply whose model kept failing transiently to the next usable model after it in
    the requested model's fallback list; the reply's ``model`` then names the model writing
    it (its prices are the ones charged). None when no fallback is left."""
    chain = [requested_model_id, *model_fallback_ids(model_id=requested_model_id)]
    if reply.model_id not in chain:
        return None
    remaining = chain[chain.index(reply.model_id) + 1 :]
    candidates = LLMModel.objects.in_bulk(remaining)
    for model_id in remaining:
        model = candidates.get(model_id)
        if model is not None and model.enabled and model_is_callable(model):
            Message.objects.filter(pk=reply.pk).update(model=model)
            reply.model = model
            return model
    return None


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
