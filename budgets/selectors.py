"""Reads for spend controls: which budgets apply, where each stands this period."""

from datetime import datetime

from django.db.models import Case, F, FloatField, Q, QuerySet, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.quotas import BudgetStatus
from budgets.models import Budget, BudgetLedger, RateLimit, Reservation, ReservationStatus
from budgets.periods import BudgetPeriod, period_end, period_start
from project.hotcache import HotCache, fresh

# Budgets and rate-limit rules per process (every admission reads them); saving or deleting
# one invalidates them in every process at once (project.hotcache, budgets.apps).
BUDGETS, LIMITS = "budgets", "limits"
_budgets: HotCache[tuple[Budget, ...]] = HotCache(BUDGETS)
_rate_limits: HotCache[tuple[RateLimit, ...]] = HotCache(LIMITS)


def budgets_applicable(
    *, user_id: int, api_key_id: int | None, team_id: int | None = None
) -> list[Budget]:
    """The budgets a call counts toward: the user's; for a request made with an API key, that
    key's; for a call charged to a team, the team's and the user's within that team. One
    query, or none while cached."""

    def load() -> tuple[Budget, ...]:
        subject = Q(user_id=user_id, team_id__isnull=True)
        if api_key_id is not None:
            subject |= Q(api_key_id=api_key_id)
        if team_id is not None:
            subject |= Q(team_id=team_id, user_id__isnull=True)
            subject |= Q(team_id=team_id, user_id=user_id)
        return tuple(Budget.objects.filter(subject))

    return [fresh(budget) for budget in _budgets.get((user_id, api_key_id, team_id), load)]


def rate_limits_applicable(
    *, user_id: int, api_key_id: int | None, team_id: int | None = None
) -> list[RateLimit]:
    def load() -> tuple[RateLimit, ...]:
        subject = Q(user_id=user_id)
        if api_key_id is not None:
            subject |= Q(api_key_id=api_key_id)
        if team_id is not None:
            subject |= Q(team_id=team_id)
        return tuple(RateLimit.objects.filter(subject))

    return [fresh(limit) for limit in _rate_limits.get((user_id, api_key_id, team_id), load)]


def _status(budget: Budget, ledger: BudgetLedger | None, start: datetime) -> BudgetStatus:
    spent_micros = ledger.spent_micros if ledger else 0
    reserved_micros = ledger.reserved_micros if ledger else 0
    spent_tokens = ledger.spent_tokens if ledger else 0
    reserved_tokens = ledger.reserved_tokens if ledger else 0
    return BudgetStatus(
        id=budget.pk,
        scope=budget.scope,
        period=budget.period,
        limit_micros=budget.limit_micros,
        limit_tokens=budget.limit_tokens,
        spent_micros=spent_micros,
        reserved_micros=reserved_micros,
        remaining_micros=max(budget.limit_micros - spent_micros - reserved_micros, 0)
        if budget.limit_micros is not None
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
    subject = Q(user_id=user.pk, team_id__isnull=True)
    if api_key_ids:
        subject |= Q(api_key_id__in=list(api_key_ids), api_key__owner_id=user.pk)
    budgets = list(Budget.objects.filter(subject).order_by("api_key_id", "period"))
    result: dict[int | None, list[BudgetStatus]] = {None: []}
    result.update({key_id: [] for key_id in api_key_ids})
    for budget, status in zip(budgets, budget_statuses_of(budgets), strict=True):
        result[budget.api_key_id].append(status)
    return result


def budget_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("user", "api_key", "api_key__owner", "team")


def reservations_held(*, reference_prefix: str, created_before: datetime) -> QuerySet[Reservation]:
    """Reservations still held for references starting with ``reference_prefix`` (for
    reconcile: the owner of the reference decides whether they are orphans)."""
    return Reservation.objects.filter(
        status=ReservationStatus.HELD,
        reference__startswith=reference_prefix,
        created_at__lt=created_before,
    )


def budgets_most_used(*, limit: int = 10, now: datetime | None = None) -> list[tuple]:
    """The budgets closest to (or at) their limit this period, for the staff dashboard: pairs
    of (budget with user and key loaded, status), most used first. Three queries."""
    now = now or timezone.now()
    current = Q()
    for period in BudgetPeriod.values:
        current |= Q(budget__period=period, period_start=period_start(period, now))
    used_usd = Case(
        When(
            budget__limit_micros__gt=0,
            then=(F("spent_micros") + F("reserved_micros")) * 1.0 / F("budget__limit_micros"),
        ),
        default=Value(0.0),
        output_field=FloatField(),
    )
    used_tokens = Case(
        When(
            budget__limit_tokens__gt=0,
            then=(F("spent_tokens") + F("reserved_tokens")) * 1.0 / F("budget__limit_tokens"),
        ),
        default=Value(0.0),
        output_field=FloatField(),
    )
    ledgers = (
        BudgetLedger.objects.filter(current)
        .annotate(used=Greatest(used_usd, used_tokens))
        .order_by("-used", "budget_id")
        .values_list("budget_id", flat=True)[:limit]
    )
    ids = list(ledgers)
    budgets = {b.pk: b for b in budget_list().filter(pk__in=ids)}
    ordered = [budgets[pk] for pk in ids if pk in budgets]
    return list(zip(ordered, budget_statuses_of(ordered, now=now), strict=True))
