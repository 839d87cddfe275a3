"""The audit log: one append-only row per security event or staff/team-admin action.

Field-level history of the audited models (who changed which budget from what to what) is
django-auditlog's ``LogEntry`` (configured in settings, AUDITLOG_INCLUDE_TRACKING_MODELS);
this table holds what auditlog cannot see: sign-ins that changed no row, failed sign-ins for
accounts that may not exist, key issue/revoke and deactivation as one named event each."""

from django.db import models
from django.utils import timezone

from project.errors import NotAllowed


class AuditLogAppendOnly(NotAllowed):
    """An attempt to change or delete audit history outside ``audit_prune``."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogAppendOnly("The audit log is append-only.", code="audit_append_only")

    def delete(self):
        raise AuditLogAppendOnly("The audit log is append-only.", code="audit_append_only")

    def _prune_delete(self) -> int:
        """Only ``audit.services.audit_prune`` deletes (old rows, by age)."""
        return models.QuerySet.delete(self)[0]


class AuditEvent(models.Model):
    class Source(models.TextChoices):
        REQUEST = "request"  # an HTTP request (API or admin)
        COMMAND = "command"  # a manage.py command
        SYSTEM = "system"  # a worker or anything else with no request

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    # No foreign key: deleting a user must never rewrite (or cascade into) history.
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_email = models.CharField(max_length=254, blank=True)
    actor_is_staff = models.BooleanField(default=False)
    target_type = models.CharField(max_length=64, blank=True, db_index=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    # {field: [before, after]}; never secrets (no password hashes, no key hashes).
    changes = models.JSONField(default=dict, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.SYSTEM)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_repr}".strip()

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditLogAppendOnly("The audit log is append-only.", code="audit_append_only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogAppendOnly("The audit log is append-only.", code="audit_append_only")
