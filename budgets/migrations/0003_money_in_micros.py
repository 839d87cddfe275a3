"""Money becomes integer micro-dollars (USD 1e-6): budget limits, ledger amounts and
reservations. SQLite adds DECIMAL columns as floats, so a settle there could leave a
reservation's -5e-19 on the ledger and fail its non-negative constraint; integers are exact
on every database. Existing rows are converted exactly, in SQL (on SQLite a stored dollar
float rounds to the micro-dollar it was written as)."""

from decimal import Decimal

from django.db import migrations, models
from django.db.models import BigIntegerField, F, Q, Value
from django.db.models.functions import Cast, Round

CONVERTED = {
    "budget": {"limit_usd": "limit_micros"},
    "budgetledger": {"spent_usd": "spent_micros", "reserved_usd": "reserved_micros"},
    "reservation": {"amount_usd": "amount_micros", "actual_usd": "actual_micros"},
}


def forwards(apps, schema_editor):
    for model_name, columns in CONVERTED.items():
        apps.get_model("budgets", model_name).objects.update(
            **{
                new: Cast(Round(F(old) * Value(Decimal(1_000_000))), BigIntegerField())
                for old, new in columns.items()
            }
        )


def backwards(apps, schema_editor):
    for model_name, columns in CONVERTED.items():
        apps.get_model("budgets", model_name).objects.update(
            **{old: F(new) * Value(Decimal("0.000001")) for old, new in columns.items()}
        )


class Migration(migrations.Migration):
    dependencies = [("budgets", "0002_monthly_token_budgets")]

    operations = [
        migrations.RemoveConstraint(model_name="budget", name="budgets_budget_has_a_limit"),
        migrations.RemoveConstraint(
            model_name="budget", name="budgets_budget_limit_usd_not_negative"
        ),
        migrations.RemoveConstraint(
            model_name="budgetledger", name="budgets_ledger_amounts_not_negative"
        ),
        migrations.RemoveConstraint(
            model_name="reservation", name="budgets_reservation_amount_not_negative"
        ),
        migrations.RemoveConstraint(
            model_name="reservation", name="budgets_reservation_settled_has_actual"
        ),
        migrations.AddField(
            model_name="budget",
            name="limit_micros",
            field=models.BigIntegerField(
                blank=True,
                null=True,
                help_text="Micro-dollars (USD 1e-6) per period. Empty: no money cap.",
            ),
        ),
        migrations.AddField(
            model_name="budgetledger",
            name="spent_micros",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="budgetledger",
            name="reserved_micros",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="reservation",
            name="amount_micros",
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="reservation",
            name="actual_micros",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(forwards, backwards),
        # A default for the dropped column so that migrating back can re-add it to a filled
        # table (the backwards conversion then writes every row).
        migrations.AlterField(
            model_name="reservation",
            name="amount_usd",
            field=models.DecimalField(decimal_places=6, default=0, max_digits=14),
        ),
        migrations.RemoveField(model_name="budget", name="limit_usd"),
        migrations.RemoveField(model_name="budgetledger", name="spent_usd"),
        migrations.RemoveField(model_name="budgetledger", name="reserved_usd"),
        migrations.RemoveField(model_name="reservation", name="amount_usd"),
        migrations.RemoveField(model_name="reservation", name="actual_usd"),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.CheckConstraint(
                condition=Q(limit_micros__isnull=False) | Q(limit_tokens__isnull=False),
                name="budgets_budget_has_a_limit",
            ),
        ),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.CheckConstraint(
                condition=Q(limit_micros__isnull=True) | Q(limit_micros__gte=0),
                name="budgets_budget_limit_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="budgetledger",
            constraint=models.CheckConstraint(
                condition=Q(spent_micros__gte=0)
                & Q(reserved_micros__gte=0)
                & Q(spent_tokens__gte=0)
                & Q(reserved_tokens__gte=0),
                name="budgets_ledger_amounts_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="reservation",
            constraint=models.CheckConstraint(
                condition=Q(amount_micros__gte=0) & Q(amount_tokens__gte=0),
                name="budgets_reservation_amount_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="reservation",
            constraint=models.CheckConstraint(
                condition=Q(status="held")
                | (Q(actual_micros__isnull=False) & Q(settled_at__gte=F("created_at"))),
                name="budgets_reservation_settled_has_actual",
            ),
        ),
    ]
