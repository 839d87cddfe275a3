from django.db import migrations, models


class AddJSONColumn(migrations.AddField):
    """AddField for a JSON column of ``llm_message``. On SQLite Django would rebuild the table
    to add it, and the rebuild recreates every index of the model state, among them the
    PostgreSQL-only full-text index (0006), which SQLite cannot parse: there the column is
    added in place instead (valid JSON is guaranteed by the model, which writes it)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        default = "[]" if self.field.default is list else "{}"
        schema_editor.execute(
            f'ALTER TABLE "llm_message" ADD COLUMN "{self.name}" text NOT NULL '
            f"DEFAULT '{default}'"
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(f'ALTER TABLE "llm_message" DROP COLUMN "{self.name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0009_model_kind_cache_prices_and_tokens"),
    ]

    operations = [
        AddJSONColumn(
            model_name="message",
            name="call_options",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="What a reply was asked with beyond the conversation's parameters "
                "(tools, tool choice, structured output, instructions), for the worker that "
                "writes it.",
            ),
        ),
        AddJSONColumn(
            model_name="message",
            name="parts",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="The whole content when it is more than text (images, tool calls, "
                "tool results), as canonical parts (llm.providers.canonical_json); empty for "
                "plain text.",
            ),
        ),
    ]
