"""Admission: the one gate every request that will call a provider passes, before anything is
queued or sent — the conversation API (``message_post``) and the compatible ``/v1/`` surface.

In order: model access (403 ``model_not_allowed``), per-minute rate limits (429
``rate_limit_exceeded`` with ``Retry-After``), then the worst case reserved against every
budget (429 ``budget_exceeded``). When the call ends, settle the reservation to what it cost."""

import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Func, IntegerField, Max, Q, Sum, TextField
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from accounts.models import ApiKey, User
from budgets.models import Reservation, ReservationStatus
from budgets.ratelimits import RateLimitStatus, ratelimit_acquire, ratelimit_refund
from budgets.selectors import budgets_applicable, reservations_held
from budgets.services import (
    budget_reserve,
    reservation_end_reference,
    reservation_release,
    reservation_settle,
)
from jobs.models import TERMINAL_STATUSES, Job
from llm.access import model_access_check
from llm.models import Conversation, LLMModel, Message, ModelFallback, Usage
from llm.providers.context import PER_MESSAGE_OVERHEAD, REPLY_PRIMING, estimate_tokens
from llm.providers.pricing import completion_cost_micros
from llm.selectors import CATALOG
from project.errors import BudgetExceeded, NotAllowed
from project.hotcache import HotCache
from teams.models import Team
from teams.selectors import team_is_member


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: its held reservation and where the caller stands against their
    rate limits (send ``headers()`` with the response)."""

    reservation: Reservation
    rate_limit: RateLimitStatus

    def headers(self) -> dict[str, str]:
        return self.rate_limit.headers()


# The highest prices of a model and its fallbacks, per process (the catalog's namespace).
_highest_prices: HotCache[dict] = HotCache(CATALOG)


def worst_case_cost_micros(*, model: LLMModel, input_tokens: int, max_tokens: int) -> int:
    """The most a call can cost: every estimated input token and ``max_tokens`` of reply,
    at the highest prices of the model and its fallbacks (a reply may end up written by one),
    in micro-dollars. One query."""
    prices = _highest_prices.get(
        model.pk,
        lambda: LLMModel.objects.filter(
            Q(pk=model.pk) | Q(pk__in=ModelFallback.objects.filter(model=model).values("fallback"))
        ).aggregate(
            input=Max("input_price_per_mtok"),
            output=Max("output_price_per_mtok"),
            cache_write=Max("cache_write_price_per_mtok"),
        ),
    )
    # Writing the prompt cache can cost more than plain input (Anthropic: 1.25x).
    input_price = max(
        prices["input"] or model.input_price_per_mtok, prices["cache_write"] or Decimal(0)
    )
    return completion_cost_micros(
        input_tokens=input_tokens,
        output_tokens=max_tokens,
        input_price_per_mtok=input_price,
        output_price_per_mtok=prices["output"] or model.output_price_per_mtok,
    )


def reply_max_tokens(
    *, conversation: Conversation, model: LLMModel, params: dict | None = None
) -> int:
    """The ``max_tokens`` a queued reply is written with: the reply's own (a regenerate's),
    else the conversation's, else LLM_DEFAULT_MAX_TOKENS, never more than the model allows."""
    params = params or {}
    requested = params.get("max_tokens") or conversation.max_tokens
    return min(requested or settings.LLM_DEFAULT_MAX_TOKENS, model.max_output_tokens)


def admission_reserve(
    *,
    user: User,
    api_key: ApiKey | None,
    model: LLMModel,
    input_tokens_estimate: int,
    max_tokens: int,
    reference: str = "",
    check_access: bool = True,
    reserve: bool = True,
    team: Team | None = None,
) -> Admission:
    """Admit one provider call for ``user`` (and ``api_key`` when the request used one),
    charged to ``team`` (``teams.selectors.team_for_call`` chose it; None: no team).

    Checks that the user, the key and the team may use ``model``, counts the request and its
    worst-case tokens (``input_tokens_estimate + max_tokens``) against their per-minute
    limits, and holds its worst-case cost against every budget of the user, the key, the team
    and the user within the team, atomically across processes. Raises ``NotAllowed`` / ``RateLimited`` / ``BudgetExceeded`` with nothing held.

    The caller MUST end every admitted call with ``admission_settle`` (actual tokens and cost;
    zero if nothing was produced) or ``admission_release``. ``reference`` names what the
    reservation pays for (``job:<uuid>`` for queued replies, whose reconcile releases
    reservations of vanished jobs); a synchronous ``/v1/`` call settles in its own request.
    Inside a transaction the reservation is a savepoint and rolls back with it (the rate-limit
    count does not). ``check_access`` False: the server chose the model (titles). ``reserve``
    False: a call that spends nothing (counting tokens) — limits apply, no budget is held or
    checked, and the reservation returned is not stored (settling it does nothing).

    Callers go through ``llm.lifecycle.call_admit``."""
    if check_access:
        model_access_check(model=model, user=user, api_key=api_key, team=team)
    tokens = input_tokens_estimate + max_tokens
    rate_limit = ratelimit_acquire(user=user, api_key=api_key, team=team, tokens=tokens)
    if not reserve:
        unheld = Reservation(
            user=user,
            api_key=api_key,
            team=team,
            reference=reference,
            model=model.slug[:64],
            amount_micros=0,
            amount_tokens=0,
        )
        return Admission(reservation=unheld, rate_limit=rate_limit)
    try:
        reservation = budget_reserve(
            user=user,
            api_key=api_key,
            team=team,
            amount_micros=worst_case_cost_micros(
                model=model, input_tokens=input_tokens_estimate, max_tokens=max_tokens
            ),
            amount_tokens=tokens,
            model=model.slug,
            reference=reference,
        )
    except BudgetExceeded:
        ratelimit_refund(status=rate_limit)  # a refused request should not also use up the rate
        raise
    return Admission(reservation=reservation, rate_limit=rate_limit)


def admission_settle(
    *, reservation: Reservation, input_tokens: int, output_tokens: int, cost_micros: int
) -> Reservation:
    """End an admitted call: its budgets now count ``cost_micros`` and the tokens instead of
    the worst case. Safe to call twice."""
    if not cost_micros and not (input_tokens or output_tokens):
        return reservation_release(reservation=reservation)
    return reservation_settle(
        reservation=reservation,
        actual_micros=cost_micros,
        actual_tokens=input_tokens + output_tokens,
    )


def admission_release(*, reservation: Reservation) -> Reservation:
    """End an admitted call that produced nothing. Safe to call twice."""
    return reservation_release(reservation=reservation)


class _OctetLength(Func):
    """UTF-8 bytes of a text column (estimate_tokens counts bytes, not characters)."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra_context
        )


def conversation_input_estimate(
    *, conversation: Conversation, content: str, extra: str = ""
) -> int:
    """A high estimate of the input tokens of the next reply, in one aggregate query: every
    message stored in the conversation (a superset of the branch the worker sends; its parts
    too) plus the new message, ``extra`` (the JSON of new parts and tool definitions) and the
    system prompt, counted like the worker's trimming does."""
    stored = conversation.messages.aggregate(
        octets=Coalesce(Sum(_OctetLength("content")), 0),
        parts=Coalesce(Sum(_OctetLength(Cast("parts", TextField())), filter=~Q(parts=[])), 0),
        count=Count("pk"),
    )
    return (
        math.ceil((stored["octets"] + stored["parts"] + len(extra.encode())) / 3)
        + stored["count"] * PER_MESSAGE_OVERHEAD
        + estimate_tokens(content)
        + PER_MESSAGE_OVERHEAD
        + (estimate_tokens(conversation.system_prompt) + PER_MESSAGE_OVERHEAD)
        + REPLY_PRIMING
    )


# --- Replies queued as jobs ------------------------------------------------------------------
# A queued reply's reservation is named after its job, so the worker, the terminal hook and
# reconcile all find it without a column on the job (jobs knows nothing of budgets).


def reply_reference(job_id) -> str:
    return f"job:{job_id}"


def reply_reservation_settle(*, job_id, message: Message | None) -> None:
    """Settle the reservation of the reply ``message`` written by job ``job_id`` to what its
    Usage row counts (a completed reply's cost, a cancelled or failed one's estimate), or
    release it when there is none — so budgets and usage stay equal. A settle the database
    refuses still ends the hold (``reservation_end_reference``). Safe to call twice."""
    usage = Usage.objects.filter(message=message).first() if message is not None else None
    reservation_end_reference(
        reference=reply_reference(job_id),
        actual_micros=usage.cost_micros if usage is not None else 0,
        actual_tokens=usage.input_tokens + usage.output_tokens if usage is not None else 0,
    )


def reply_reservation_ensure(*, job: Job, message: Message, max_tokens: int) -> None:
    """Before a reply's provider call: hold its worst case unless already held. It was
    reserved at POST; a manual retry of a failed or cancelled reply (released then) reserves
    again here, against the budgets as they are now. Raises ``BudgetExceeded``."""
    reference = reply_reference(job.pk)
    conversation = message.conversation
    api_key_id = job.payload.get("api_key_id")
    team_id = job.payload.get("team_id")
    # Cached (project.hotcache): with no team and no budget, no reservation query at all.
    if team_id is None and not budgets_applicable(
        user_id=conversation.owner_id, api_key_id=api_key_id, team_id=None
    ):
        return
    if Reservation.objects.filter(reference=reference, status=ReservationStatus.HELD).exists():
        return
    team = Team.objects.filter(pk=team_id).first() if team_id else None
    if (
        team is not None
        and conversation.owner_id != team.service_user_id
        and not team_is_member(team_id=team.pk, user_id=conversation.owner_id)
    ):
        # Removed from the team since the reply was first asked for: it cannot charge it now.
        raise NotAllowed(
            f"You are no longer a member of team '{team.slug}', which this reply is charged to.",
            code="team_membership_ended",
        )
    if not budgets_applicable(
        user_id=conversation.owner_id, api_key_id=api_key_id, team_id=team_id
    ):
        return
    estimate = conversation_input_estimate(conversation=conversation, content="")
    budget_reserve(
        user=conversation.owner,
        api_key=ApiKey.objects.filter(pk=api_key_id).first() if api_key_id else None,
        team=team,
        amount_micros=worst_case_cost_micros(
            model=message.model, input_tokens=estimate, max_tokens=max_tokens
        ),
        amount_tokens=estimate + max_tokens,
        model=message.model.slug,
        reference=reference,
    )


def reply_reservations_reconcile(*, dry_run: bool = False) -> int:
    """A reconcile step (registered with jobs): settle reservations still held for jobs that
    ended (their terminal hook did not run to the end) or vanished. Returns how many."""
    grace = timezone.now() - timedelta(seconds=settings.JOBS_ENQUEUE_GRACE)
    held = list(reservations_held(reference_prefix="job:", created_before=grace))
    job_ids = {reservation.reference.removeprefix("job:") for reservation in held}
    live = set(
        str(pk)
        for pk in Job.objects.filter(pk__in=job_ids)
        .exclude(status__in=TERMINAL_STATUSES)
        .values_list("pk", flat=True)
    )
    orphans = [r for r in held if r.reference.removeprefix("job:") not in live]
    if dry_run:
        return len(orphans)
    for reservation in orphans:
        job_id = reservation.reference.removeprefix("job:")
        message = Message.objects.filter(job_id=job_id).order_by("-created_at").first()
        reply_reservation_settle(job_id=job_id, message=message)
    return len(orphans)
