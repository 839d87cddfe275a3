"""Budgets and reservations, through the services, against the real database. The concurrency
tests run many threads (each its own connection) released by one barrier."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from accounts.services import api_key_create
from budgets.models import Budget, BudgetLedger, Reservation, ReservationHold, ReservationStatus
from budgets.periods import BudgetPeriod, period_end, period_start
from budgets.selectors import budget_statuses, budgets_most_used
from budgets.services import (
    MONEY_QUANTUM,
    budget_reserve,
    budget_set,
    money,
    reservation_release,
    reservation_settle,
)
from llm.providers.pricing import COST_QUANTUM
from project.errors import BudgetExceeded, InvalidInput
from tests.accounts.factories import UserFactory

WORST_CASE = Decimal("0.010000")
# Concurrent writers need a database server; SQLite's in-memory test database locks tables.
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL"
)


def _ledger(budget: Budget) -> BudgetLedger:
    return BudgetLedger.objects.get(budget=budget, period_start=period_start(budget.period))


def _race(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads released at once; results (or exceptions) by i."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted on
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_money_is_rounded_like_costs():
    assert MONEY_QUANTUM == COST_QUANTUM
    assert money(Decimal("0.0000005")) == Decimal("0.000001")
    assert money(Decimal("0.00000049")) == Decimal("0.000000")


@pytest.mark.django_db
class TestReserveAndSettle:
    def test_refusal_says_which_budget_and_stores_nothing(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("0.015"))
        budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=100)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=100)
        details = refused.value.details
        assert refused.value.code == "budget_exceeded"
        assert details["budget"]["id"] == budget.pk
        assert details["budget"]["scope"] == "user"
        assert details["budget"]["remaining_usd"] == "0.005000"
        resets = period_end("daily", period_start("daily"))
        assert details["budget"]["resets_at"] == resets.isoformat().replace("+00:00", "Z")
        assert "Your daily budget" in refused.value.message
        assert Reservation.objects.count() == 1
        assert _ledger(budget).reserved_usd == WORST_CASE

    def test_settle_replaces_the_hold_by_the_actual_cost_once(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_usd=Decimal("1"))
        reservation = budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=500)
        reservation_settle(
            reservation=reservation, actual_usd=Decimal("0.0012344"), actual_tokens=120
        )
        reservation_settle(reservation=reservation, actual_usd=Decimal("5"), actual_tokens=9)
        ledger = _ledger(budget)
        assert (ledger.reserved_usd, ledger.reserved_tokens) == (0, 0)
        assert (ledger.spent_usd, ledger.spent_tokens) == (Decimal("0.001234"), 120)
        reservation.refresh_from_db()
        assert reservation.status == ReservationStatus.SETTLED
        assert reservation.actual_usd == Decimal("0.001234")

    def test_release_gives_everything_back(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.LIFETIME, limit_tokens=1000)
        reservation = budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=1000)
        with pytest.raises(BudgetExceeded):
            budget_reserve(user=user, amount_usd=Decimal(0), amount_tokens=1)
        reservation_release(reservation=reservation)
        assert _ledger(budget).reserved_tokens == 0
        budget_reserve(user=user, amount_usd=Decimal(0), amount_tokens=1000)

    def test_token_limit_and_money_limit_both_hold(self, user):
        budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("1"), limit_tokens=150)
        budget_reserve(user=user, amount_usd=Decimal("0.01"), amount_tokens=100)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, amount_usd=Decimal("0.01"), amount_tokens=100)
        assert refused.value.details["budget"]["remaining_tokens"] == 50
        assert "50 tokens left of 150" in refused.value.message

    def test_a_keys_spend_counts_toward_the_key_and_its_owner(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        user_budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("1"))
        key_budget = budget_set(api_key=key, period=BudgetPeriod.DAILY, limit_usd=Decimal("0.015"))
        budget_reserve(user=user, api_key=key, amount_usd=WORST_CASE, amount_tokens=10)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, api_key=key, amount_usd=WORST_CASE, amount_tokens=10)
        assert refused.value.details["budget"]["scope"] == "api_key"
        assert "This API key's daily budget" in refused.value.message
        # Without the key (a JWT request) only the user's budget applies.
        budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=10)
        assert _ledger(user_budget).reserved_usd == 2 * WORST_CASE
        assert _ledger(key_budget).reserved_usd == WORST_CASE

    def test_refused_by_the_second_budget_holds_nothing_in_the_first(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        first = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("1"))
        budget_set(api_key=key, period=BudgetPeriod.DAILY, limit_usd=Decimal("0.001"))
        with pytest.raises(BudgetExceeded):
            budget_reserve(user=user, api_key=key, amount_usd=WORST_CASE, amount_tokens=10)
        ledger = BudgetLedger.objects.filter(budget=first).first()
        assert ledger is None or ledger.reserved_usd == 0
        assert not Reservation.objects.exists()

    def test_without_budgets_nothing_is_stored_and_settling_is_harmless(self, user):
        reservation = budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=10)
        reservation_settle(reservation=reservation, actual_usd=WORST_CASE, actual_tokens=10)
        assert not Reservation.objects.exists()

    def test_a_daily_budget_starts_afresh_at_utc_midnight(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("0.01"))
        reservation = budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=10)
        # Move the hold and its ledger row to yesterday, as if reserved before midnight.
        yesterday = period_start("daily") - timedelta(days=1)
        BudgetLedger.objects.filter(budget=budget).update(period_start=yesterday)
        ReservationHold.objects.filter(reservation=reservation).update(period_start=yesterday)
        fresh = budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=10)
        # The reply admitted yesterday ends today: it is settled in yesterday's period.
        reservation_settle(reservation=reservation, actual_usd=Decimal("0.004"), actual_tokens=7)
        old = BudgetLedger.objects.get(budget=budget, period_start=yesterday)
        assert (old.spent_usd, old.reserved_usd) == (Decimal("0.004"), 0)
        assert _ledger(budget).reserved_usd == WORST_CASE
        assert fresh.holds.get().period_start == period_start("daily")
        status = budget_statuses(user=user)[None][0]
        assert status.remaining_usd == 0
        assert status.resets_at == period_start("daily") + timedelta(days=1)

    def test_statuses_show_limit_spent_reserved_remaining(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_usd=Decimal("2"))
        budget_set(api_key=key, period=BudgetPeriod.LIFETIME, limit_tokens=10_000)
        held = budget_reserve(user=user, api_key=key, amount_usd=Decimal("0.5"), amount_tokens=900)
        done = budget_reserve(user=user, api_key=key, amount_usd=Decimal("0.5"), amount_tokens=900)
        reservation_settle(reservation=done, actual_usd=Decimal("0.25"), actual_tokens=400)
        statuses = budget_statuses(user=user, api_key_ids=[key.pk])
        mine, keys = statuses[None][0], statuses[key.pk][0]
        assert (mine.spent_usd, mine.reserved_usd, mine.remaining_usd) == (
            Decimal("0.25"),
            Decimal("0.5"),
            Decimal("1.25"),
        )
        assert mine.resets_at.day == 1
        assert (keys.spent_tokens, keys.reserved_tokens, keys.remaining_tokens) == (
            400,
            held.amount_tokens,
            10_000 - 400 - 900,
        )
        assert keys.resets_at is None

    def test_invalid_budgets_are_refused(self, user):
        with pytest.raises(InvalidInput):
            budget_set(user=user, period="weekly", limit_usd=Decimal(1))
        with pytest.raises(InvalidInput):
            budget_set(user=user, period="daily")
        with pytest.raises(InvalidInput):
            budget_set(period="daily", limit_usd=Decimal(1))

    def test_new_users_get_the_default_budget(self, settings):
        settings.BUDGET_DEFAULT_USER_USD = "5.00"
        settings.BUDGET_DEFAULT_USER_TOKENS = None
        settings.BUDGET_DEFAULT_USER_PERIOD = "monthly"
        budget = UserFactory().budgets.get()
        assert (budget.period, budget.limit_usd, budget.limit_tokens) == (
            "monthly",
            Decimal("5.000000"),
            None,
        )

    def test_no_default_budget_unless_configured(self, user):
        assert not user.budgets.exists()

    def test_the_most_used_budgets_come_first(self, user, other_user):
        by_money = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=Decimal("1"))
        by_tokens = budget_set(user=other_user, period=BudgetPeriod.MONTHLY, limit_tokens=100)
        budget_set(user=UserFactory(), period=BudgetPeriod.DAILY, limit_usd=Decimal("1"))
        budget_reserve(user=user, amount_usd=Decimal("0.2"), amount_tokens=1)
        budget_reserve(user=other_user, amount_usd=Decimal(0), amount_tokens=90)
        rows = budgets_most_used()
        assert [budget.pk for budget, _ in rows] == [by_tokens.pk, by_money.pk]
        assert rows[0][1].remaining_tokens == 10
        assert rows[1][1].remaining_usd == Decimal("0.8")


@on_postgresql
@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def test_100_concurrent_reservations_admit_exactly_what_fits(self):
        user = UserFactory()
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=10 * WORST_CASE)
        results = _race(
            100, lambda i: budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=50)
        )
        admitted = [r for r in results if isinstance(r, Reservation)]
        refused = [r for r in results if isinstance(r, BudgetExceeded)]
        assert (len(admitted), len(refused)) == (10, 90), results
        ledger = _ledger(budget)
        assert ledger.reserved_usd == budget.limit_usd
        assert Reservation.objects.count() == 10

    def test_two_keys_of_one_user_share_the_user_budget(self):
        user = UserFactory()
        keys = [api_key_create(owner=user, name=f"k{i}").api_key for i in range(2)]
        for key in keys:  # each key alone could afford all 100
            budget_set(api_key=key, period=BudgetPeriod.DAILY, limit_usd=100 * WORST_CASE)
        budget = budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_usd=10 * WORST_CASE)
        results = _race(
            100,
            lambda i: budget_reserve(
                user=user, api_key=keys[i % 2], amount_usd=WORST_CASE, amount_tokens=50
            ),
        )
        assert sum(isinstance(r, Reservation) for r in results) == 10, results
        assert sum(isinstance(r, BudgetExceeded) for r in results) == 90
        assert _ledger(budget).reserved_usd == budget.limit_usd
        key_reserved = sum(
            BudgetLedger.objects.filter(budget__api_key__in=keys).values_list(
                "reserved_usd", flat=True
            )
        )
        assert key_reserved == 10 * WORST_CASE

    def test_reservations_racing_settles_never_overspend(self):
        user = UserFactory()
        limit = 10 * WORST_CASE
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_usd=limit)
        held = [
            budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=50) for _ in range(10)
        ]
        actual = Decimal("0.004321")

        def work(i: int):
            if i < 10:  # ten replies finish, each costing less than its worst case
                return reservation_settle(reservation=held[i], actual_usd=actual, actual_tokens=30)
            return budget_reserve(user=user, amount_usd=WORST_CASE, amount_tokens=50)

        results = _race(60, work)
        assert not [
            r for r in results if isinstance(r, Exception) and not isinstance(r, BudgetExceeded)
        ]
        admitted = [r for r in results[10:] if isinstance(r, Reservation)]
        ledger = _ledger(budget)
        assert ledger.spent_usd == 10 * actual
        assert ledger.reserved_usd == len(admitted) * WORST_CASE
        assert ledger.spent_usd + ledger.reserved_usd <= limit
        # At most what the settles freed: (limit - spent) // worst case.
        assert len(admitted) <= (limit - 10 * actual) // WORST_CASE
        # Settle what was admitted at full worst case: spend ends exactly at or under the limit.
        for reservation in admitted:
            reservation_settle(reservation=reservation, actual_usd=WORST_CASE, actual_tokens=50)
        ledger.refresh_from_db()
        assert ledger.reserved_usd == 0
        assert ledger.spent_usd <= limit
        held_sum = sum(Reservation.objects.values_list("actual_usd", flat=True))
        assert held_sum == ledger.spent_usd
        assert timezone.now()  # period unchanged during the test (not near midnight) is assumed
