"""Reads for spend controls: which budgets apply, where each stands this period."""

from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.quotas import BudgetStatus
from budgets.models import Budget, BudgetLedger, RateLimit, Reservation, ReservationStatus
from budgets.periods import period_end, period_start


def budgets_applicable(*, user_id: int, api_key_id: int | None) -> list[Budget]:
    """The user's budgets and, for a request made with an API key, that key's too."""
    subject = Q(user_id=user_id)
    if api_key_id is not None:
        subject |= Q(api_key_id=api_key_id)
    return list(Budget.objects.filter(subject))


def rate_limits_applicable(*, user_id: int, api_key_id: int | None) -> list[RateLimit]:
    subject = Q(user_id=user_id)
    if api_key_id is not None:
        subject |= Q(api_key_id=api_key_id)
    return list(RateLimit.objects.filter(subject))


def _status(budget: Budget, ledger: BudgetLedger | None, start: datetime) -> BudgetStatus:
    spent_usd = ledger.spent_usd if ledger else Decimal(0)
    reserved_usd = ledger.reserved_usd if ledger else Decimal(0)
    spent_tokens = ledger.spent_tokens if ledger else 0
    reserved_tokens = ledger.reserved_tokens if ledger else 0
    return BudgetStatus(
        id=budget.pk,
        scope=budget.scope,
        period=budget.period,
        limit_usd=budget.limit_usd,
        limit_tokens=budget.limit_tokens,
        spent_usd=spent_usd,
        reserved_usd=reserved_usd,
        remaining_usd=max(budget.limit_usd - spent_usd - reserved_usd, Decimal(0))
        if budget.limit_usd is not None
        else None,
        spent_tokens=spent_tokens,
        reserved_tokens=reserved_tokens,
        remaining_tokens=max(budget.limit_tokens - spent_tokens - reserved_tokens, 0)
        if budget.limit_tokens is not None
        else None,
        resets_at=period_end(budget.period, start),
    )


def budget_statuses_of(budgets: list[Budget], *, now: datetime | None = None) -> list[BudgetStatus]:
    """Where each budget stands in its current period (one query for all their ledgers)."""
    now = now or timezone.now()
    starts = {budget.pk: period_start(budget.period, now) for budget in budgets}
    ledgers = {
        (ledger.budget_id, ledger.period_start): ledger
        for ledger in BudgetLedger.objects.filter(
            budget_id__in=starts, period_start__in=set(starts.values())
        )
    }
    return [
        _status(budget, ledgers.get((budget.pk, starts[budget.pk])), starts[budget.pk])
        for budget in budgets
    ]


def budget_statuses(*, user, api_key_ids=()) -> dict[int | None, list[BudgetStatus]]:
    """``user``'s own budgets under ``None`` and each listed key's under its id, in two
    queries however many keys (registered as accounts' budget reader)."""
    subject = Q(user_id=user.pk)
    if api_key_ids:
        subject |= Q(api_key_id__in=list(api_key_ids), api_key__owner_id=user.pk)
    budgets = list(Budget.objects.filter(subject).order_by("api_key_id", "period"))
    result: dict[int | None, list[BudgetStatus]] = {None: []}
    result.update({key_id: [] for key_id in api_key_ids})
    for budget, status in zip(budgets, budget_statuses_of(budgets), strict=True):
        result[budget.api_key_id].append(status)
    return result


def budget_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("user", "api_key", "api_key__owner")


def reservations_held(*, reference_prefix: str, created_before: datetime) -> QuerySet[Reservation]:
    """Reservations still held for references starting with ``reference_prefix`` (for
    reconcile: the owner of the reference decides whether they are orphans)."""
    return Reservation.objects.filter(
        status=ReservationStatus.HELD,
        reference__startswith=reference_prefix,
        created_at__lt=created_before,
    )
