import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations


class AddIndexOnPostgreSQL(migrations.AddIndex):
    """A GIN full-text index exists only on PostgreSQL; SQLite (the zero-setup default)
    searches with a plain scan and records the index in the model state only."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("llm", "0005_usage_api_key_model_access"),
    ]

    operations = [
        AddIndexOnPostgreSQL(
            model_name="message",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.search.SearchVector("content", config="english"),
                name="llm_message_content_search",
            ),
        ),
    ]
