"""Budgets and reservations, through the services, against the real database. The concurrency
tests run many threads (each its own connection) released by one barrier."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.services import api_key_create
from budgets.models import Budget, BudgetLedger, Reservation, ReservationHold, ReservationStatus
from budgets.periods import BudgetPeriod, period_end, period_start
from budgets.selectors import budget_statuses, budgets_most_used
from budgets.services import (
    budget_reserve,
    budget_set,
    reservation_release,
    reservation_settle,
)
from llm.models import Usage
from llm.providers.pricing import completion_cost_micros
from project.errors import BudgetExceeded, InvalidInput
from project.money import micros, usd
from tests.accounts.factories import UserFactory
from tests.llm.factories import StandinModelFactory

WORST_CASE = micros("0.010000")
# The ASGI-served tests need PostgreSQL (the live server and the test share a database).
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


@pytest.mark.django_db
class TestReserveAndSettle:
    def test_refusal_says_which_budget_and_stores_nothing(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("0.015"))
        budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=100)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=100)
        details = refused.value.details
        assert refused.value.code == "budget_exceeded"
        assert details["budget"]["id"] == budget.pk
        assert details["budget"]["scope"] == "user"
        assert details["budget"]["remaining_usd"] == "0.005000"
        resets = period_end("daily", period_start("daily"))
        assert details["budget"]["resets_at"] == resets.isoformat().replace("+00:00", "Z")
        assert "Your daily budget" in refused.value.message
        assert Reservation.objects.count() == 1
        assert _ledger(budget).reserved_micros == WORST_CASE

    def test_settle_replaces_the_hold_by_the_actual_cost_once(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_micros=micros("1"))
        reservation = budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=500)
        reservation_settle(reservation=reservation, actual_micros=1234, actual_tokens=120)
        reservation_settle(reservation=reservation, actual_micros=micros("5"), actual_tokens=9)
        ledger = _ledger(budget)
        assert (ledger.reserved_micros, ledger.reserved_tokens) == (0, 0)
        assert (ledger.spent_micros, ledger.spent_tokens) == (micros("0.001234"), 120)
        reservation.refresh_from_db()
        assert reservation.status == ReservationStatus.SETTLED
        assert reservation.actual_micros == micros("0.001234")

    def test_release_gives_everything_back(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.LIFETIME, limit_tokens=1000)
        reservation = budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=1000)
        with pytest.raises(BudgetExceeded):
            budget_reserve(user=user, amount_micros=micros(0), amount_tokens=1)
        reservation_release(reservation=reservation)
        assert _ledger(budget).reserved_tokens == 0
        budget_reserve(user=user, amount_micros=micros(0), amount_tokens=1000)

    def test_token_limit_and_money_limit_both_hold(self, user):
        budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"), limit_tokens=150)
        budget_reserve(user=user, amount_micros=micros("0.01"), amount_tokens=100)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, amount_micros=micros("0.01"), amount_tokens=100)
        assert refused.value.details["budget"]["remaining_tokens"] == 50
        assert "50 tokens left of 150" in refused.value.message

    def test_a_keys_spend_counts_toward_the_key_and_its_owner(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        user_budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        key_budget = budget_set(
            api_key=key, period=BudgetPeriod.DAILY, limit_micros=micros("0.015")
        )
        budget_reserve(user=user, api_key=key, amount_micros=WORST_CASE, amount_tokens=10)
        with pytest.raises(BudgetExceeded) as refused:
            budget_reserve(user=user, api_key=key, amount_micros=WORST_CASE, amount_tokens=10)
        assert refused.value.details["budget"]["scope"] == "api_key"
        assert "This API key's daily budget" in refused.value.message
        # Without the key (a JWT request) only the user's budget applies.
        budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=10)
        assert _ledger(user_budget).reserved_micros == 2 * WORST_CASE
        assert _ledger(key_budget).reserved_micros == WORST_CASE

    def test_refused_by_the_second_budget_holds_nothing_in_the_first(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        first = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        budget_set(api_key=key, period=BudgetPeriod.DAILY, limit_micros=micros("0.001"))
        with pytest.raises(BudgetExceeded):
            budget_reserve(user=user, api_key=key, amount_micros=WORST_CASE, amount_tokens=10)
        ledger = BudgetLedger.objects.filter(budget=first).first()
        assert ledger is None or ledger.reserved_micros == 0
        assert not Reservation.objects.exists()

    def test_without_budgets_nothing_is_stored_and_settling_is_harmless(self, user):
        reservation = budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=10)
        reservation_settle(reservation=reservation, actual_micros=WORST_CASE, actual_tokens=10)
        assert not Reservation.objects.exists()

    def test_a_daily_budget_starts_afresh_at_utc_midnight(self, user):
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("0.01"))
        reservation = budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=10)
        # Move the hold and its ledger row to yesterday, as if reserved before midnight.
        yesterday = period_start("daily") - timedelta(days=1)
        BudgetLedger.objects.filter(budget=budget).update(period_start=yesterday)
        ReservationHold.objects.filter(reservation=reservation).update(period_start=yesterday)
        fresh = budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=10)
        # The reply admitted yesterday ends today: it is settled in yesterday's period.
        reservation_settle(reservation=reservation, actual_micros=micros("0.004"), actual_tokens=7)
        old = BudgetLedger.objects.get(budget=budget, period_start=yesterday)
        assert (old.spent_micros, old.reserved_micros) == (micros("0.004"), 0)
        assert _ledger(budget).reserved_micros == WORST_CASE
        assert fresh.holds.get().period_start == period_start("daily")
        status = budget_statuses(user=user)[None][0]
        assert status.remaining_micros == 0
        assert status.resets_at == period_start("daily") + timedelta(days=1)

    def test_statuses_show_limit_spent_reserved_remaining(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_micros=micros("2"))
        budget_set(api_key=key, period=BudgetPeriod.LIFETIME, limit_tokens=10_000)
        held = budget_reserve(
            user=user, api_key=key, amount_micros=micros("0.5"), amount_tokens=900
        )
        done = budget_reserve(
            user=user, api_key=key, amount_micros=micros("0.5"), amount_tokens=900
        )
        reservation_settle(reservation=done, actual_micros=micros("0.25"), actual_tokens=400)
        statuses = budget_statuses(user=user, api_key_ids=[key.pk])
        mine, keys = statuses[None][0], statuses[key.pk][0]
        assert (mine.spent_micros, mine.reserved_micros, mine.remaining_micros) == (
            micros("0.25"),
            micros("0.5"),
            micros("1.25"),
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
            budget_set(user=user, period="weekly", limit_micros=micros(1))
        with pytest.raises(InvalidInput):
            budget_set(user=user, period="daily")
        with pytest.raises(InvalidInput):
            budget_set(period="daily", limit_micros=micros(1))

    def test_new_users_get_the_default_budget(self, settings):
        settings.BUDGET_DEFAULT_USER_USD = "5.00"
        settings.BUDGET_DEFAULT_USER_TOKENS = None
        settings.BUDGET_DEFAULT_USER_PERIOD = "monthly"
        budget = UserFactory().budgets.get()
        assert (budget.period, budget.limit_micros, budget.limit_tokens) == (
            "monthly",
            micros("5.000000"),
            None,
        )

    def test_no_default_budget_unless_configured(self, user):
        assert not user.budgets.exists()

    def test_the_most_used_budgets_come_first(self, user, other_user):
        by_money = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        by_tokens = budget_set(user=other_user, period=BudgetPeriod.MONTHLY, limit_tokens=100)
        budget_set(user=UserFactory(), period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        budget_reserve(user=user, amount_micros=micros("0.2"), amount_tokens=1)
        budget_reserve(user=other_user, amount_micros=micros(0), amount_tokens=90)
        rows = budgets_most_used()
        assert [budget.pk for budget, _ in rows] == [by_tokens.pk, by_money.pk]
        assert rows[0][1].remaining_tokens == 10
        assert rows[1][1].remaining_micros == micros("0.8")


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    """On PostgreSQL and on SQLite alike (the test database is a file there, so threads wait
    on its locks like the web server and the workers do)."""

    def test_100_concurrent_reservations_admit_exactly_what_fits(self):
        user = UserFactory()
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=10 * WORST_CASE)
        results = _race(
            100, lambda i: budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=50)
        )
        admitted = [r for r in results if isinstance(r, Reservation)]
        refused = [r for r in results if isinstance(r, BudgetExceeded)]
        assert (len(admitted), len(refused)) == (10, 90), results
        ledger = _ledger(budget)
        assert ledger.reserved_micros == budget.limit_micros
        assert Reservation.objects.count() == 10

    def test_two_keys_of_one_user_share_the_user_budget(self):
        user = UserFactory()
        keys = [api_key_create(owner=user, name=f"k{i}").api_key for i in range(2)]
        for key in keys:  # each key alone could afford all 100
            budget_set(api_key=key, period=BudgetPeriod.DAILY, limit_micros=100 * WORST_CASE)
        budget = budget_set(user=user, period=BudgetPeriod.MONTHLY, limit_micros=10 * WORST_CASE)
        results = _race(
            100,
            lambda i: budget_reserve(
                user=user, api_key=keys[i % 2], amount_micros=WORST_CASE, amount_tokens=50
            ),
        )
        assert sum(isinstance(r, Reservation) for r in results) == 10, results
        assert sum(isinstance(r, BudgetExceeded) for r in results) == 90
        assert _ledger(budget).reserved_micros == budget.limit_micros
        key_reserved = sum(
            BudgetLedger.objects.filter(budget__api_key__in=keys).values_list(
                "reserved_micros", flat=True
            )
        )
        assert key_reserved == 10 * WORST_CASE

    def test_reservations_racing_settles_never_overspend(self):
        user = UserFactory()
        limit = 10 * WORST_CASE
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=limit)
        held = [
            budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=50) for _ in range(10)
        ]
        actual = micros("0.004321")

        def work(i: int):
            if i < 10:  # ten replies finish, each costing less than its worst case
                return reservation_settle(
                    reservation=held[i], actual_micros=actual, actual_tokens=30
                )
            return budget_reserve(user=user, amount_micros=WORST_CASE, amount_tokens=50)

        results = _race(60, work)
        assert not [
            r for r in results if isinstance(r, Exception) and not isinstance(r, BudgetExceeded)
        ]
        admitted = [r for r in results[10:] if isinstance(r, Reservation)]
        ledger = _ledger(budget)
        assert ledger.spent_micros == 10 * actual
        assert ledger.reserved_micros == len(admitted) * WORST_CASE
        assert ledger.spent_micros + ledger.reserved_micros <= limit
        # At most what the settles freed: (limit - spent) // worst case.
        assert len(admitted) <= (limit - 10 * actual) // WORST_CASE
        # Settle what was admitted at full worst case: spend ends exactly at or under the limit.
        for reservation in admitted:
            reservation_settle(reservation=reservation, actual_micros=WORST_CASE, actual_tokens=50)
        ledger.refresh_from_db()
        assert ledger.reserved_micros == 0
        assert ledger.spent_micros <= limit
        held_sum = sum(Reservation.objects.values_list("actual_micros", flat=True))
        assert held_sum == ledger.spent_micros
        assert timezone.now()  # period unchanged during the test (not near midnight) is assumed

    def test_fractional_costs_settled_concurrently_stay_exact(self):
        """The case that left replies stuck on SQLite: holds of $0.000215 settled to costs
        like $0.000107 by many threads at once. With DECIMAL columns SQLite added them as
        floats, a ledger kept 0.0002149999999999995 against a 0.000215 hold, and the next
        settle broke the non-negative constraint. Spend must equal the usage, exactly."""
        user = UserFactory()
        key = api_key_create(owner=user, name="k").api_key
        model = StandinModelFactory(
            input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.60")
        )
        worst = micros("0.000215")
        budgets = [
            budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1")),
            budget_set(user=user, period=BudgetPeriod.LIFETIME, limit_tokens=10**9),
            budget_set(api_key=key, period=BudgetPeriod.MONTHLY, limit_micros=micros("1")),
        ]

        def work(i: int) -> int:
            for round_ in range(5):  # reserve, then settle what a reply cost, five times
                reservation = budget_reserve(
                    user=user, api_key=key, amount_micros=worst, amount_tokens=400
                )
                input_tokens, output_tokens = 300 + i + round_, 7 * (i % 40) + 1
                cost = completion_cost_micros(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    input_price_per_mtok=model.input_price_per_mtok,
                    output_price_per_mtok=model.output_price_per_mtok,
                )
                with transaction.atomic():  # as accounting does: the Usage row and the settle
                    Usage.objects.create(
                        user=user,
                        api_key=key,
                        model=model,
                        input_tokens=input_tokens,
                        output_tokens=output_tokens,
                        cost_micros=cost,
                        created_at=timezone.now(),
                    )
                    reservation_settle(
                        reservation=reservation,
                        actual_micros=cost,
                        actual_tokens=input_tokens + output_tokens,
                    )
                connection.close()  # back to the pool between calls, as a request does
            return i

        results = _race(40, work)
        assert results == list(range(40)), [r for r in results if isinstance(r, Exception)]
        used = Usage.objects.aggregate(cost=Sum("cost_micros"), count=Count("pk"))
        assert used["count"] == 200
        for budget in (budgets[0], budgets[2]):
            ledger = _ledger(budget)
            assert ledger.reserved_micros == 0
            assert ledger.spent_micros == used["cost"]
        assert _ledger(budgets[1]).reserved_tokens == 0
        # Shown to the user in dollars, to the millionth: the same as the usage report says.
        status = budget_statuses(user=user)[None][0]
        assert usd(status.spent_micros) == usd(used["cost"]) > Decimal("0.02")
