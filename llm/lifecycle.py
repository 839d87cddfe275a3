"""One call lifecycle: every provider call Parley makes passes here, whoever makes it —
conversation replies (``llm.completion``, a job), every ``/v1/`` call (``llm.compat.gateway``:
chat completions, messages, responses, embeddings, token counts), conversation titles
(``llm.titles``), and whatever comes next (tools):

1. *admit* — ``call_admit``: model access, per-minute rate limits, the worst case reserved
   against every budget (``llm.admission``);
2. *call* — ``provider_for`` builds the one provider client; ``retry_wait`` and
   ``fallback_targets`` say what to try after a transient failure, as the caller's
   ``CallPolicy`` says (``attempt_failed`` counts each failed attempt);
3. *account* — ``call_account``: one price (``call_cost``), the one writer of ``Usage`` rows,
   the ``GatewayCall`` record when the caller keeps one, the metrics;
4. *settle or release* — in the same transaction as the usage, so budgets and the usage report
   agree; a settle that fails (a ledger the database refuses to change) still ends the hold
   (``reservation_close_anyway``): nothing is ever left held by a call that ended.

Callers pass only what differs: a ``CallPolicy`` and the call's facts. Policies decided once for
every path (README, "One call lifecycle"):

* a call that ends without the provider's usage report — a client that went away, a cancelled
  reply, a failure after text was streamed — is charged estimated tokens: the prompt's estimate
  plus the text produced (``estimated_usage``); a failure before any text is charged nothing;
* a temperature above 1 for an Anthropic model is refused (400) wherever it is chosen
  (``temperature_problem``), never silently clamped;
* transient failures before any text are tried again (``attempts_per_model``) and then fall
  back through the model's fallbacks, for synchronous calls in the request, for replies through
  the job queue's retries."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.selectors import api_key_exists
from budgets.models import Reservation, ReservationStatus
from budgets.services import reservation_close_anyway, reservation_end_reference
from llm import metrics
from llm.admission import Admission, admission_reserve, admission_settle
from llm.catalog import ProviderTarget, provider_target
from llm.models import GatewayCall, LLMModel, Message, Provider, Usage
from llm.providers import (
    ChatProvider,
    ChatRequest,
    ProviderError,
    completion_cost_micros,
    estimate_tokens,
    get_async_provider,
    get_provider,
)
from llm.providers.context import PER_MESSAGE_OVERHEAD, REPLY_PRIMING, estimate_message_tokens
from llm.selectors import model_fallback_ids
from project import hotcache
from teams.models import Team
from teams.selectors import team_exists

logger = logging.getLogger("parley.llm")

ANTHROPIC_MAX_TEMPERATURE = 1.0


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What differs between callers. ``kind`` names them in logs; ``attempts_per_model`` is how
    often a transient failure before any text is tried on the same model within one call (a
    job's retries are the job queue's); ``fallbacks`` whether the model's fallbacks are tried
    next; ``check_access`` whether the caller's model access rules apply (not to a model the
    server picks, such as the title model); ``max_retry_wait`` caps the provider's
    ``Retry-After`` honoured inside a request; ``reserves`` whether the worst case is held
    against budgets (not for a call that spends no tokens)."""

    kind: str
    attempts_per_model: int = 1
    fallbacks: bool = False
    check_access: bool = True
    max_retry_wait: float = 2.0
    reserves: bool = True


# Conversation replies and stored responses: retried with backoff by the job queue
# (JOBS_MAX_ATTEMPTS per model), then moved to the next fallback (llm.completion).
REPLY = CallPolicy(kind="reply", attempts_per_model=1, fallbacks=True)
# /v1/ calls answered in the request (not stored): one more try on the same model, then the
# fallbacks, all before the first byte goes to the client.
GATEWAY = CallPolicy(kind="gateway", attempts_per_model=2, fallbacks=True)
# Titles: budgeted and counted like any call; the server picked the model, so no access rule.
TITLE = CallPolicy(kind="title", attempts_per_model=1, fallbacks=False, check_access=False)
# Token counts (/v1/messages/count_tokens): free, so nothing is held against budgets and there
# is nothing to account (no tokens, no Usage row, no record); but each is a request against
# the requests-per-minute limits like any call, or a client could hammer the provider.
COUNT = CallPolicy(kind="count", attempts_per_model=1, fallbacks=False, reserves=False)


# --- Rules every path applies ---------------------------------------------------------------


def temperature_problem(model: LLMModel, temperature: float | Decimal | None) -> str | None:
    """Why ``temperature`` cannot be used with ``model``, or None. Refused everywhere (never
    clamped): Anthropic models take 0 to 1."""
    if (
        temperature is not None
        and model.provider == Provider.ANTHROPIC
        and float(temperature) > ANTHROPIC_MAX_TEMPERATURE
    ):
        return f"'temperature' may be at most 1 for '{model.slug}' (an Anthropic model)."
    return None


def max_tokens_ceiling(model: LLMModel, asked: int | None) -> int | None:
    """A reply's ``max_tokens`` as asked, lowered to the model's ceiling, not refused: clients
    send their own idea of a model's limit when the user sets none (the Vercel AI SDK and
    litellm 128,000 for an Anthropic model they do not know), and the catalog's limit may be
    lower than the provider's. None stays None (the caller's default applies)."""
    return None if asked is None else min(asked, model.max_output_tokens)


def prompt_estimate(request: ChatRequest) -> int:
    """Estimated input tokens of ``request`` (what admission reserves and what a call that ends
    without a usage report is charged)."""
    # estimate_message_tokens reads every part (tool calls and results, images), not only text
    tokens = REPLY_PRIMING + sum(estimate_message_tokens(m) for m in request.messages)
    return tokens + (
        estimate_tokens(request.system) + PER_MESSAGE_OVERHEAD if request.system else 0
    )


def estimated_usage(request: ChatRequest | None, produced_text: str) -> tuple[int, int]:
    """Tokens charged for a call that ended without the provider's usage report (cancelled,
    abandoned, failed mid-stream): the prompt's estimate and the text produced. Nothing when
    the provider was never called (``request`` None)."""
    if request is None:
        return 0, 0
    return prompt_estimate(request), estimate_tokens(produced_text)


# --- Admit ----------------------------------------------------------------------------------


def call_admit(
    policy: CallPolicy,
    *,
    user: User,
    api_key: ApiKey | None,
    model: LLMModel,
    input_tokens_estimate: int,
    max_tokens: int,
    reference: str,
    team: Team | None,
) -> Admission:
    """Admit one call charged to ``team`` (None: no team; ``teams.selectors.team_for_call``
    chooses it) — raises ``NotAllowed`` / ``RateLimited`` / ``BudgetExceeded`` with nothing
    held. End it with ``call_account`` (a policy that ``reserves`` nothing, such as ``COUNT``,
    holds nothing to end). ``team`` has no default: a call admitted without the team its
    usage is charged to would escape the team's budgets, limits and model access."""
    return admission_reserve(
        user=user,
        api_key=api_key,
        model=model,
        input_tokens_estimate=input_tokens_estimate,
        max_tokens=max_tokens,
        reference=reference,
        check_access=policy.check_access,
        reserve=policy.reserves,
        team=team,
    )


# --- Call -----------------------------------------------------------------------------------


def provider_for(target: ProviderTarget, *, is_async: bool = False, timeout: float | None = None):
    """The provider client for ``target`` — the one place clients are built (cached per
    configuration by ``llm.providers``). ``is_async`` for code running in an event loop."""
    build = get_async_provider if is_async else get_provider
    return build(
        target.provider,
        api_key=target.api_key,
        base_url=target.base_url,
        timeout=timeout if timeout is not None else settings.LLM_REQUEST_TIMEOUT,
    )


def model_provider(model: LLMModel, *, timeout: float | None = None) -> ChatProvider:
    """The synchronous provider client of a callable catalog model."""
    target = provider_target(model)
    if target is None:
        raise ValueError(f"Model '{model.slug}' cannot be called now.")
    return provider_for(target, timeout=timeout)


def fallback_targets(
    policy: CallPolicy, model: LLMModel, *, usable: Callable[[LLMModel], bool] | None = None
) -> list[tuple[LLMModel, ProviderTarget]]:
    """The fallbacks to try after ``model`` kept failing transiently, in order: enabled and
    callable now, and ``usable`` for this call (same wire format, fits the request). Empty
    when the policy does not fall back. Two queries; only asked once the model has failed."""
    if not policy.fallbacks:
        return []
    fallback_ids = model_fallback_ids(model_id=model.pk)
    candidates = LLMModel.objects.in_bulk(fallback_ids)
    found = []
    for model_id in fallback_ids:
        fallback = candidates.get(model_id)
        if fallback is None or not fallback.enabled or (usable and not usable(fallback)):
            continue
        target = provider_target(fallback)
        if target is not None:
            found.append((fallback, target))
    return found


def retry_wait(policy: CallPolicy, error: ProviderError) -> float:
    """Seconds to wait before trying the same model again inside a call: the provider's
    ``Retry-After`` when it gave one, capped by the policy."""
    return min(error.retry_after if error.retry_after is not None else 0.25, policy.max_retry_wait)


def attempt_failed(model: LLMModel, error: ProviderError) -> None:
    """Count a failed attempt that the call goes on from (another try, a fallback)."""
    outcome = "transient_error" if error.transient else "permanent_error"
    metrics.COMPLETIONS.labels(provider=model.provider, model=model.slug, outcome=outcome).inc()


# --- Account, settle or release ---------------------------------------------------------------


def call_cost(
    model: LLMModel,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> int:
    """What ``model`` charges for the tokens, in micro-dollars: the one pricing of a call
    (``completion_cost_micros``: integer arithmetic, a fraction of a micro-dollar rounded up).
    Cached input tokens (part of ``input_tokens``) are priced at the model's cache-read and
    cache-write prices."""
    if not (input_tokens or output_tokens):
        return 0
    return completion_cost_micros(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_price_per_mtok=model.input_price_per_mtok,
        output_price_per_mtok=model.output_price_per_mtok,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cache_read_price_per_mtok=model.cache_read_price_per_mtok,
        cache_write_price_per_mtok=model.cache_write_price_per_mtok,
    )


@dataclass(slots=True)
class Spent:
    """How one call ended, as accounting needs it. ``outcome``: completed, cancelled,
    transient_error, permanent_error, or "" when the attempt was counted already
    (``attempt_failed``). ``reservation`` is the admitted hold, or None with a
    ``reference`` to find it by (queued replies, whose hold outlives the request)."""

    policy: CallPolicy
    user: User
    model: LLMModel | None
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    api_key_id: int | None = None
    team_id: int | None = None  # the team the call was charged to
    reservation: Reservation | None = None
    reference: str = ""
    message: Message | None = None  # a reply's usage is counted once per message
    record: GatewayCall | None = None  # saved with the usage when the caller keeps one
    latency_ms: int | None = None
    time_to_first_token_ms: int | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def call_account(spent: Spent, *, strict: bool = False) -> int:
    """Account one ended call in one transaction: its ``Usage`` row (when tokens were spent),
    its call record, and its hold settled to the cost (or released when nothing was spent);
    then the metrics. Returns the cost in micro-dollars.

    A settle the database refuses (a ledger constraint) must not leave the hold held: the hold
    is ended anyway, without the arithmetic that failed, and the usage and the record are kept
    (the client already has its answer). ``strict``: raise instead, so that the caller's own
    transaction (a reply being stored) rolls back and its job fails; the job's terminal hook
    then ends the hold."""
    cost = (
        call_cost(
            spent.model,
            spent.input_tokens,
            spent.output_tokens,
            cache_read_tokens=spent.cache_read_tokens,
            cache_write_tokens=spent.cache_write_tokens,
        )
        if spent.model
        else 0
    )
    try:
        # A fresh read of the caches' generations (not the request's, taken before the call):
        # a key or team deleted while the call ran is seen.
        with hotcache.snapshot(), transaction.atomic():
            _usage_and_record_write(spent, cost)
            _settle(spent, cost)
    except DatabaseError:
        reservation = _reservation_of(spent)
        if strict or reservation is None:
            # strict: the caller's transaction rolls back, the job fails, and its terminal
            # hook ends the hold (``hold_end``) outside that transaction.
            raise
        logger.exception("Settling a call failed; its hold is ended anyway")
        reservation_close_anyway(
            reservation=reservation, actual_micros=cost, actual_tokens=spent.tokens
        )
        with transaction.atomic():
            _usage_and_record_write(spent, cost)
    _observe(spent, cost)
    return cost


def hold_end(*, reference: str, cost_micros: int = 0, tokens: int = 0) -> None:
    """End the hold named ``reference`` (a queued reply's job), whatever the ledger's state:
    settle it to ``cost_micros``/``tokens`` (release when both are zero), and if the database
    refuses, end it anyway. For terminal hooks, which must never leave a hold behind."""
    reservation_end_reference(reference=reference, actual_micros=cost_micros, actual_tokens=tokens)


def _reservation_of(spent: Spent) -> Reservation | None:
    if spent.reservation is not None:
        return spent.reservation if not spent.reservation._state.adding else None
    if spent.reference:
        return Reservation.objects.filter(
            reference=spent.reference, status=ReservationStatus.HELD
        ).first()
    return None


def _settle(spent: Spent, cost_micros: int) -> None:
    reservation = _reservation_of(spent)
    if reservation is None:
        return
    admission_settle(
        reservation=reservation,
        input_tokens=spent.input_tokens,
        output_tokens=spent.output_tokens,
        cost_micros=cost_micros,
    )


def _usage_and_record_write(spent: Spent, cost_micros: int) -> None:
    usage = _usage_write(spent, cost_micros)
    if spent.record is not None:
        spent.record.cost_micros, spent.record.usage = cost_micros, usage
        spent.record.save(force_insert=True)


def _usage_write(spent: Spent, cost_micros: int) -> Usage | None:
    """The one writer of ``Usage`` rows. A reply's is written once per message, however many
    attempts it took."""
    if not spent.tokens or spent.model is None:
        return None
    # Asked of the per-process caches (no query while neither changed; one Redis read of
    # their generations for both, see ``call_account``).
    api_key_id = spent.api_key_id
    if api_key_id is not None and not api_key_exists(api_key_id=api_key_id):
        api_key_id = None  # deleted by staff meanwhile: the usage still counts for the user
    team_id = spent.team_id
    if team_id is not None and not team_exists(team_id=team_id):
        team_id = None  # the team was deleted meanwhile
    fields = {
        "user": spent.user,
        "api_key_id": api_key_id,
        "team_id": team_id,
        "model": spent.model,
        "input_tokens": spent.input_tokens,
        "output_tokens": spent.output_tokens,
        "cache_read_tokens": spent.cache_read_tokens,
        "cache_write_tokens": spent.cache_write_tokens,
        "cost_micros": cost_micros,
        "created_at": timezone.now(),
    }
    if spent.message is not None:
        if spent.record is None:  # nobody needs the row back: one INSERT, no SELECT/savepoints
            Usage.objects.bulk_create(
                [Usage(message=spent.message, **fields)], ignore_conflicts=True
            )
            return None
        usage, _ = Usage.objects.get_or_create(message=spent.message, defaults=fields)
        return usage
    return Usage.objects.create(**fields)


def _observe(spent: Spent, cost_micros: int) -> None:
    if spent.model is None:
        return
    metrics.observe_call(
        provider=spent.model.provider,
        model=spent.model.slug,
        outcome=spent.outcome,
        input_tokens=spent.input_tokens,
        output_tokens=spent.output_tokens,
        cost_micros=cost_micros,
        latency_ms=spent.latency_ms,
        time_to_first_token_ms=spent.time_to_first_token_ms,
    )
