"""Costs become integer micro-dollars (USD 1e-6) on messages, usage rows and API calls, so
sums are exact on every database (SQLite adds DECIMAL columns as floats). Existing rows are
converted exactly, in SQL. Catalog prices stay Decimal (four decimals per million tokens):
they are never summed, and the pricing function turns them into integers exactly."""

from decimal import Decimal

from django.db import migrations, models
from django.db.models import BigIntegerField, F, Q, Value
from django.db.models.functions import Cast, Round

CONVERTED = ["message", "usage", "gatewaycall"]


def forwards(apps, schema_editor):
    for model_name in CONVERTED:
        apps.get_model("llm", model_name).objects.update(
            cost_micros=Cast(Round(F("cost") * Value(Decimal(1_000_000))), BigIntegerField())
        )


def backwards(apps, schema_editor):
    for model_name in CONVERTED:
        apps.get_model("llm", model_name).objects.update(
            cost=F("cost_micros") * Value(Decimal("0.000001"))
        )


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0006_message_search_index"),
        # budgets 0002 reads Usage.cost: re-applying it must find the column.
        ("budgets", "0002_monthly_token_budgets"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="usage", name="llm_usage_cost_not_negative"),
        migrations.RemoveConstraint(model_name="gatewaycall", name="llm_gwcall_cost_not_negative"),
        migrations.AddField(
            model_name="message",
            name="cost_micros",
            field=models.BigIntegerField(blank=True, null=True, help_text="USD 1e-6."),
        ),
        migrations.AddField(
            model_name="usage",
            name="cost_micros",
            field=models.BigIntegerField(
                default=0, help_text="USD 1e-6 (exact sums on every database)."
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="gatewaycall",
            name="cost_micros",
            field=models.BigIntegerField(default=0, help_text="USD 1e-6."),
        ),
        migrations.RunPython(forwards, backwards),
        # A default for the dropped column so that migrating back can re-add it to a filled
        # table (the backwards conversion then writes every row).
        migrations.AlterField(
            model_name="usage",
            name="cost",
            field=models.DecimalField(decimal_places=6, default=0, max_digits=12),
        ),
        migrations.RemoveField(model_name="message", name="cost"),
        migrations.RemoveField(model_name="usage", name="cost"),
        migrations.RemoveField(model_name="gatewaycall", name="cost"),
        migrations.AddConstraint(
            model_name="usage",
            constraint=models.CheckConstraint(
                condition=Q(cost_micros__gte=0), name="llm_usage_cost_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="gatewaycall",
            constraint=models.CheckConstraint(
                condition=Q(cost_micros__gte=0), name="llm_gwcall_cost_not_negative"
            ),
        ),
    ]
