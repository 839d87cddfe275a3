"""Writes for spend controls: setting budgets, reserving a request's worst case against every
budget that applies, and settling or releasing the reservation when the request ends.

How a reservation stays atomic across processes: every budget has one ledger row per period;
reserving is a conditional ``UPDATE ledger SET reserved = reserved + amount WHERE spent +
reserved + amount <= limit`` on each applicable row, all in one transaction, rows always taken
in budget-id order (so two requests never wait on each other crosswise). PostgreSQL re-checks
the WHERE clause on the newest row version after waiting for a concurrent writer's lock, so two
requests can never both pass on the same remaining amount. If any row refuses, the whole
transaction rolls back: nothing is held and ``BudgetExceeded`` says which budget refused."""

import logging
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from accounts.models import ApiKey, User
from budgets.models import (
    Budget,
    BudgetLedger,
    RateLimit,
    Reservation,
    ReservationHold,
    ReservationStatus,
)
from budgets.periods import BudgetPeriod, period_end, period_start
from budgets.selectors import budgets_applicable
from project.errors import BudgetExceeded, InvalidInput
from project.money import micros, usd
from teams.models import Team

logger = logging.getLogger("parley.budgets")

# Every amount of money here is integer micro-dollars (project.money): ledger arithmetic in
# SQL stays exact on SQLite too, where DECIMAL columns are added as floats.


def _limits_check(*, period: str, limit_micros: int | None, limit_tokens: int | None) -> None:
    if period not in BudgetPeriod.values:
        raise InvalidInput(f"Unknown period '{period}'.", code="invalid_period")
    if limit_micros is None and limit_tokens is None:
        raise InvalidInput("A budget needs a USD limit, a token limit, or both.", code="no_limit")
    if limit_micros is not None and limit_micros < 0:
        raise InvalidInput("limit_usd may not be negative.", code="invalid_limit")
    if limit_tokens is not None and limit_tokens < 0:
        raise InvalidInput("limit_tokens may not be negative.", code="invalid_limit")


def _subject_check(*, user_id, api_key_id, team_id) -> None:
    # user, api_key, team, or user + team (a member's budget within the team)
    if sum(x is not None for x in (user_id, api_key_id, team_id)) != 1 and not (
        user_id is not None and team_id is not None and api_key_id is None
    ):
        raise InvalidInput(
            "A budget belongs to a user, an API key, a team, or a member within a team.",
            code="invalid_subject",
        )


def budget_set(
    *,
    user: User | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    period: str,
    limit_micros: int | None = None,
    limit_tokens: int | None = None,
) -> Budget:
    """Create or change the ``period`` budget of a user, an API key, a team, or a member
    within a team (``user`` and ``team``). What was already spent this period keeps counting
    against the new limit. (A member's budget must stay within the team's: set it through
    ``teams.services.member_budget_set``.)"""
    _subject_check(
        user_id=user.pk if user else None,
        api_key_id=api_key.pk if api_key else None,
        team_id=team.pk if team else None,
    )
    _limits_check(period=period, limit_micros=limit_micros, limit_tokens=limit_tokens)
    budget, _ = Budget.objects.update_or_create(
        user=user,
        api_key=api_key,
        team=team,
        period=period,
        defaults={"limit_micros": limit_micros, "limit_tokens": limit_tokens},
    )
    return budget


def budget_save(*, budget: Budget) -> Budget:
    """Save a budget edited in the admin, with the same checks as ``budget_set``."""
    _limits_check(
        period=budget.period, limit_micros=budget.limit_micros, limit_tokens=budget.limit_tokens
    )
    _subject_check(user_id=budget.user_id, api_key_id=budget.api_key_id, team_id=budget.team_id)
    budget.save()
    return budget


def budget_delete(*, budget: Budget) -> None:
    """Remove a cap. Reservations it holds are still settled against its ledger rows; they go
    with it, which is harmless since nothing reads them any more."""
    budget.delete()


def budget_default_create_for_new_user(
    sender, instance: User, created: bool, raw: bool = False, **kwargs
) -> None:
    """post_save receiver: give a new user the default budget from settings, if one is set
    (BUDGET_DEFAULT_USER_USD / BUDGET_DEFAULT_USER_TOKENS / BUDGET_DEFAULT_USER_PERIOD)."""
    if not created or raw:
        return
    limit_usd = settings.BUDGET_DEFAULT_USER_USD
    limit_tokens = settings.BUDGET_DEFAULT_USER_TOKENS
    if limit_usd is None and limit_tokens is None:
        return
    budget_set(
        user=instance,
        period=settings.BUDGET_DEFAULT_USER_PERIOD,
        limit_micros=micros(str(limit_usd)) if limit_usd is not None else None,
        limit_tokens=limit_tokens,
    )


def rate_limit_set(
    *,
    user: User | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
) -> RateLimit:
    """Set (or clear, with both None) the per-minute limits of a user, an API key or a team."""
    if sum(x is not None for x in (user, api_key, team)) != 1:
        raise InvalidInput(
            "A rate limit belongs to a user, an API key or a team.", code="invalid_subject"
        )
    limit, _ = RateLimit.objects.update_or_create(
        user=user,
        api_key=api_key,
        team=team,
        defaults={
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
        },
    )
    return limit


def _describe(budget: Budget) -> str:
    period = {"daily": "daily", "monthly": "monthly", "lifetime": "lifetime"}[budget.period]
    return {
        "api_key": f"This API key's {period} budget",
        "team": f"The team's {period} budget",
        "team_member": f"Your {period} budget in this team",
        "user": f"Your {period} budget",
    }[budget.scope]


def _refusal(
    budget: Budget, ledger: BudgetLedger | None, start: datetime, amount_micros: int, tokens: int
) -> BudgetExceeded:
    used_micros = (ledger.spent_micros + ledger.reserved_micros) if ledger else 0
    spent_tokens = (ledger.spent_tokens + ledger.reserved_tokens) if ledger else 0
    remaining_micros = (
        max(budget.limit_micros - used_micros, 0) if budget.limit_micros is not None else None
    )
    remaining_tokens = (
        max(budget.limit_tokens - spent_tokens, 0) if budget.limit_tokens is not None else None
    )
    resets_at = period_end(budget.period, start)
    short = []
    if remaining_micros is not None and remaining_micros < amount_micros:
        short.append(
            f"${usd(remaining_micros)} left of ${usd(budget.limit_micros)}, "
            f"this request may cost up to ${usd(amount_micros)}"
        )
    if remaining_tokens is not None and remaining_tokens < tokens:
        short.append(
            f"{remaining_tokens} tokens left of {budget.limit_tokens}, this request may use up to {tokens}"
        )
    when = f"; it resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}" if resets_at else ""
    return BudgetExceeded(
        f"{_describe(budget)} cannot cover this request ({'; '.join(short)}){when}.",
        details={
            "budget": {
                "id": budget.pk,
                "scope": budget.scope,
                "period": budget.period,
                "limit_usd": str(usd(budget.limit_micros))
                if budget.limit_micros is not None
                else None,
                "limit_tokens": budget.limit_tokens,
                "remaining_usd": str(usd(remaining_micros))
                if remaining_micros is not None
                else None,
                "remaining_tokens": remaining_tokens,
                "resets_at": resets_at.isoformat().replace("+00:00", "Z") if resets_at else None,
            },
            "required_usd": str(usd(amount_micros)),
            "required_tokens": tokens,
        },
    )


def _ledger_hold(budget: Budget, *, now: datetime, amount_micros: int, tokens: int) -> datetime:
    """Hold ``amount_micros``/``tokens`` on the budget's ledger row for the current period if it
    stays within the limit, and return the period's start; else raise the refusal. One UPDATE
    when the row exists (the common case)."""
    start = period_start(budget.period, now)
    conditions = []
    if budget.limit_micros is not None:
        conditions.append(
            LessThanOrEqual(
                F("spent_micros") + F("reserved_micros"), budget.limit_micros - amount_micros
            )
        )
    if budget.limit_tokens is not None:
        conditions.append(
            LessThanOrEqual(F("spent_tokens") + F("reserved_tokens"), budget.limit_tokens - tokens)
        )
    current = BudgetLedger.objects.filter(budget_id=budget.pk, period_start=start)
    hold = {
        "reserved_micros": F("reserved_micros") + amount_micros,
        "reserved_tokens": F("reserved_tokens") + tokens,
    }
    if current.filter(*conditions).update(**hold):
        return start
    # No row matched: the limit is reached, or this is the period's first reservation. Open
    # the row (a no-op when it exists or a concurrent opener wins) and try once more. Deciding
    # from a SELECT instead would refuse a request whose row another transaction opened
    # between the UPDATE and the SELECT.
    BudgetLedger.objects.bulk_create(
        [BudgetLedger(budget_id=budget.pk, period_start=start)], ignore_conflicts=True
    )
    if current.filter(*conditions).update(**hold):
        return start
    raise _refusal(budget, current.first(), start, amount_micros, tokens)


def budget_reserve(
    *,
    user: User,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    amount_micros: int,
    amount_tokens: int,
    model: str = "",
    reference: str = "",
) -> Reservation:
    """Hold ``amount_micros`` (micro-dollars) and ``amount_tokens`` (a request's worst case)
    against every budget of ``user``, of ``api_key``, of ``team`` (the team the call is charged
    to) and of the user within that team, all or nothing, atomically across processes.

    Raises ``BudgetExceeded`` (nothing held, nothing stored) naming the first budget that
    cannot cover it, its remaining amount and when it resets. Inside the caller's transaction
    it is a savepoint: a refusal undoes only the reservation. When no budget applies the returned reservation is not stored, and settling it does
    nothing."""
    reservation = Reservation(
        user=user,
        api_key=api_key,
        team=team,
        reference=reference,
        model=model[:64],
        amount_micros=amount_micros,
        amount_tokens=amount_tokens,
    )
    budgets = budgets_applicable(
        user_id=user.pk,
        api_key_id=api_key.pk if api_key else None,
        team_id=team.pk if team else None,
    )
    if not budgets:
        return reservation
    now = timezone.now()
    with transaction.atomic():
        # Fixed order (budget id) so concurrent reservations never deadlock.
        holds = [
            ReservationHold(
                reservation=reservation,
                budget_id=budget.pk,
                period_start=_ledger_hold(
                    budget, now=now, amount_micros=amount_micros, tokens=amount_tokens
                ),
            )
            for budget in sorted(budgets, key=lambda b: b.pk)
        ]
        reservation.save(force_insert=True)
        ReservationHold.objects.bulk_create(holds)
    return reservation


def _close(
    reservation: Reservation,
    *,
    actual_micros: int,
    actual_tokens: int,
    status: str,
    clamp: bool = False,
) -> Reservation:
    """Close a held reservation: the hold comes off each ledger row it was held in and the
    actual amounts are added. ``clamp``: take off only what a row still holds (never below
    zero), for a row that no longer holds it all."""
    if reservation._state.adding:  # nothing was held: no budget applied when it was made
        return reservation
    now = timezone.now()
    with transaction.atomic():
        closed = Reservation.objects.filter(
            pk=reservation.pk, status=ReservationStatus.HELD
        ).update(
            status=status,
            actual_micros=actual_micros,
            actual_tokens=actual_tokens,
            settled_at=now,
        )
        if not closed:  # settled already (a second call, or reconcile got there first)
            reservation.refresh_from_db()
            return reservation
        holds = (
            ReservationHold.objects.filter(reservation_id=reservation.pk)
            .order_by("budget_id")
            .values_list("budget_id", "period_start")
        )
        reserved_micros = F("reserved_micros") - reservation.amount_micros
        reserved_tokens = F("reserved_tokens") - reservation.amount_tokens
        if clamp:
            reserved_micros = Greatest(reserved_micros, Value(0))
            reserved_tokens = Greatest(reserved_tokens, Value(0))
        for budget_id, start in holds:  # same order as reserving: no deadlocks
            BudgetLedger.objects.filter(budget_id=budget_id, period_start=start).update(
                reserved_micros=reserved_micros,
                reserved_tokens=reserved_tokens,
                spent_micros=F("spent_micros") + actual_micros,
                spent_tokens=F("spent_tokens") + actual_tokens,
            )
    reservation.status = status
    reservation.actual_micros, reservation.actual_tokens, reservation.settled_at = (
        actual_micros,
        actual_tokens,
        now,
    )
    return reservation


def reservation_settle(
    *, reservation: Reservation, actual_micros: int, actual_tokens: int
) -> Reservation:
    """Replace the held worst case by what the request really cost, in every budget period it
    was held in (a reply that ends after midnight counts in the day it was admitted).
    Safe to call twice: only the first call changes anything."""
    return _close(
        reservation,
        actual_micros=actual_micros,
        actual_tokens=actual_tokens,
        status=ReservationStatus.SETTLED,
    )


def reservation_release(*, reservation: Reservation) -> Reservation:
    """Give the whole hold back (the request produced nothing). Safe to call twice."""
    return _close(reservation, actual_micros=0, actual_tokens=0, status=ReservationStatus.RELEASED)


def reservation_close_anyway(
    *, reservation: Reservation, actual_micros: int, actual_tokens: int
) -> Reservation:
    """End a held reservation whose ordinary settle the database refused (a ledger row that
    no longer holds it): the hold comes off each ledger row as far as the row still has it
    (never below zero), the actual amounts are added, and the reservation is closed — settled
    when something was spent, released otherwise. Used only after ``reservation_settle`` or
    ``reservation_release`` failed, so that an ended call never keeps its hold."""
    spent = bool(actual_micros or actual_tokens)
    return _close(
        reservation,
        actual_micros=actual_micros,
        actual_tokens=actual_tokens,
        status=ReservationStatus.SETTLED if spent else ReservationStatus.RELEASED,
        clamp=True,
    )


def reservation_end_reference(
    *, reference: str, actual_micros: int = 0, actual_tokens: int = 0
) -> Reservation | None:
    """End the reservation held for ``reference`` (e.g. ``job:<uuid>``), if any, whatever its
    ledger rows' state: settled to the actual amounts (released when both are zero), and if
    the database refuses that, closed anyway (``reservation_close_anyway``). For terminal
    hooks and reconcile, which must never leave a hold behind. Safe to call twice."""
    reservation = Reservation.objects.filter(
        reference=reference, status=ReservationStatus.HELD
    ).first()
    if reservation is None:
        return None
    try:
        with transaction.atomic():
            if actual_micros == 0 and actual_tokens == 0:
                return reservation_release(reservation=reservation)
            return reservation_settle(
                reservation=reservation, actual_micros=actual_micros, actual_tokens=actual_tokens
            )
    except DatabaseError:
        logger.exception("Settling reservation %s failed; it is ended anyway", reference)
        return reservation_close_anyway(
            reservation=reservation, actual_micros=actual_micros, actual_tokens=actual_tokens
        )
