"""The old per-user monthly token budget is carried over to budgets by a data migration."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from budgets.models import Budget, BudgetLedger
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
            cost="0.001",
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
    assert (budget.period, budget.limit_tokens, budget.limit_usd) == ("monthly", 5000, None)
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.period_start == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert (ledger.spent_tokens, ledger.reserved_tokens) == (350, 0)
    assert not Budget.objects.filter(user=free).exists()
    with connection.cursor() as cursor:
        columns = [
            c.name for c in connection.introspection.get_table_description(cursor, "accounts_user")
        ]
    assert "monthly_token_budget" not in columns
