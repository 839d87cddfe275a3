"""Data migrations: the old per-user monthly token budget is carried over to budgets, and
dollar amounts become integer micro-dollars exactly."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from budgets.models import Budget, BudgetLedger, Reservation
from llm.models import Usage
from tests.accounts.factories import UserFactory
from tests.llm.factories import StandinModelFactory

BEFORE = [("accounts", "0001_initial"), ("budgets", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_monthly_token_budgets_become_budgets_with_this_months_usage_as_spent():
    capped, free = UserFactory(), UserFactory()
    model = StandinModelFactory()
    now = timezone.now()
    last_month = datetime(2000, 1, 15, tzinfo=UTC)
    for created_at, tokens in ((now, 300), (now, 50), (last_month, 999)):
        Usage.objects.create(
            user=capped,
            model=model,
            input_tokens=tokens,
            output_tokens=0,
            cost_micros=1000,
            created_at=created_at,
        )
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)  # the column is back, budgets 0002 undone
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_user SET monthly_token_budget = 5000 WHERE id = %s", [capped.pk]
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    budget = Budget.objects.get(user=capped)
    assert (budget.period, budget.limit_tokens, budget.limit_micros) == ("monthly", 5000, None)
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.period_start == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert (ledger.spent_tokens, ledger.reserved_tokens) == (350, 0)
    assert ledger.spent_micros == 2000  # this month's $0.002, through both money migrations
    assert not Budget.objects.filter(user=free).exists()
    with connection.cursor() as cursor:
        columns = [
            c.name for c in connection.introspection.get_table_description(cursor, "accounts_user")
        ]
    assert "monthly_token_budget" not in columns


MONEY_BEFORE = [("budgets", "0002_monthly_token_budgets"), ("llm", "0006_message_search_index")]


@pytest.mark.django_db(transaction=True)
def test_dollar_amounts_become_exact_micro_dollars():
    user, model = UserFactory(), StandinModelFactory()  # their tables do not change
    executor = MigrationExecutor(connection)
    executor.migrate(MONEY_BEFORE)
    old = executor.loader.project_state(MONEY_BEFORE).apps
    budget = old.get_model("budgets", "Budget").objects.create(
        user_id=user.pk, period="daily", limit_usd=Decimal("12.345678")
    )
    now = timezone.now()
    old.get_model("budgets", "BudgetLedger").objects.create(
        budget=budget,
        period_start=now,
        spent_usd=Decimal("0.000645"),
        reserved_usd=Decimal("0.000215"),
    )
    old.get_model("budgets", "Reservation").objects.create(
        user_id=user.pk, amount_usd=Decimal("0.000215"), amount_tokens=5
    )
    for cost in ("0.000215", "0.000215", "0.000215", "1234.567891"):
        old.get_model("llm", "Usage").objects.create(
            user_id=user.pk,
            model_id=model.pk,
            input_tokens=1,
            output_tokens=1,
            cost=Decimal(cost),
            created_at=now,
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert Budget.objects.get(pk=budget.pk).limit_micros == 12_345_678
    ledger = BudgetLedger.objects.get(budget_id=budget.pk)
    assert (ledger.spent_micros, ledger.reserved_micros) == (645, 215)
    assert Reservation.objects.get().amount_micros == 215
    costs = sorted(Usage.objects.values_list("cost_micros", flat=True))
    assert costs == [215, 215, 215, 1_234_567_891]
