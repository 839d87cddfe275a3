"""The audit tables refuse UPDATE and DELETE in the database itself, whoever connects.

PostgreSQL: a trigger raises on any UPDATE, and on DELETE unless the transaction has set
``parley.audit_prune = 'on'`` (only audit.services.audit_prune does). On django-auditlog's
table the one UPDATE allowed is Django's SET_NULL of ``actor_id`` when a user is deleted (the
entry keeps ``actor_email``). SQLite (development): UPDATE refused by trigger; DELETE only by
the Python guards (AuditEvent.delete and its queryset), since SQLite has no session setting."""

from django.db import migrations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION parley_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('parley.audit_prune', true) = 'on' THEN
            RETURN OLD;
        END IF;
    ELSIF TG_TABLE_NAME = 'auditlog_logentry'
        AND NEW.actor_id IS NULL AND OLD.actor_id IS NOT NULL
        AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
TABLES = ("audit_auditevent", "auditlog_logentry")


def forwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            if table == TABLES[0]:
                schema_editor.execute(PG_FUNCTION, None)
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION parley_audit_append_only()"
            )
        elif vendor == "sqlite":
            when = "WHEN NOT (NEW.actor_id IS NULL AND OLD.actor_id IS NOT NULL)" if (
                table == "auditlog_logentry"
            ) else ""
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE ON {table} {when} "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def backwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor in ("postgresql", "sqlite"):
            on = f" ON {table}" if vendor == "postgresql" else ""
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only{on}")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS parley_audit_append_only()")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_audit_event"),
        ("auditlog", "0017_add_actor_email"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
