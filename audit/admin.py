import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import event_line


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: nobody adds, edits or deletes audit history here (pruning by age is
    ``manage.py audit_prune``). Model field changes are under "Log entries" (django-auditlog)."""

    list_display = ["created_at", "action", "actor_email", "target_repr", "ip", "source"]
    list_filter = ["action", "source", "actor_is_staff", "target_type", "created_at"]
    search_fields = ["actor_email", "target_repr", "target_id", "request_id", "ip"]
    date_hierarchy = "created_at"
    actions = ["export_jsonl"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Export selected events as JSON lines")
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> HttpResponse:
        lines = (
            json.dumps(event_line(e), sort_keys=True, default=str) + "\n"
            for e in queryset.order_by("created_at", "id")
        )
        response = HttpResponse("".join(lines), content_type="application/x-ndjson")
        name = f"audit-{timezone.now():%Y%m%d-%H%M%S}.jsonl"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
