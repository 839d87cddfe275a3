"""Carry the old ``User.monthly_token_budget`` over to budgets: each user who had one gets a
monthly token budget with the same limit, and this month's usage so far as spent, so the cap
keeps holding across the upgrade. The field itself is dropped by accounts' next migration,
which this one runs before."""

from datetime import UTC, datetime

from django.db import migrations
from django.db.models import F, Sum


def forwards(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Budget = apps.get_model("budgets", "Budget")
    BudgetLedger = apps.get_model("budgets", "BudgetLedger")
    Usage = apps.get_model("llm", "Usage")
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    capped = User.objects.filter(monthly_token_budget__isnull=False)
    for user_id, limit in capped.values_list("pk", "monthly_token_budget").iterator():
        budget, _ = Budget.objects.get_or_create(
            user_id=user_id, period="monthly", defaults={"limit_tokens": limit}
        )
        used = Usage.objects.filter(user_id=user_id, created_at__gte=month).aggregate(
            tokens=Sum(F("input_tokens") + F("output_tokens")), cost=Sum("cost")
        )
        BudgetLedger.objects.get_or_create(
            budget=budget,
            period_start=month,
            defaults={"spent_tokens": used["tokens"] or 0, "spent_usd": used["cost"] or 0},
        )


def backwards(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Budget = apps.get_model("budgets", "Budget")
    for budget in Budget.objects.filter(
        user__isnull=False, period="monthly", limit_tokens__isnull=False
    ):
        User.objects.filter(pk=budget.user_id).update(monthly_token_budget=budget.limit_tokens)


class Migration(migrations.Migration):
    dependencies = [
        ("budgets", "0001_initial"),
        ("accounts", "0001_initial"),
        ("llm", "0001_initial"),
    ]
    # Before the field is dropped, declared here so that accounts' migrations never name
    # budgets (accounts knows nothing of it).
    run_before = [("accounts", "0002_remove_user_monthly_token_budget")]
    operations = [migrations.RunPython(forwards, backwards)]
