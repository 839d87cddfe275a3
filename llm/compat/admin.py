"""The admin's view of ``/v1/`` calls: read-only records (who, key, model, endpoint, tokens,
cost, latency, status, request id). Registered from ``llm/admin.py``."""

from django.contrib import admin
from django.http import HttpRequest

from llm.models import GatewayCall
from project.money import dollars


@admin.register(GatewayCall)
class GatewayCallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "user",
        "api_key",
        "model_requested",
        "endpoint",
        "stream",
        "status",
        "http_status",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency_ms",
        "request_id",
    ]
    list_filter = ["endpoint", "status", "stream", "http_status", "model"]
    search_fields = ["=id", "=request_id", "user__email", "model_requested", "error_code"]
    list_select_related = ["user", "api_key", "model"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    exclude = ["cost_micros"]
    readonly_fields = ["cost"]

    @admin.display(description="cost (USD)", ordering="cost_micros")
    def cost(self, call: GatewayCall) -> str:
        return dollars(call.cost_micros)

    # A record of what happened: nobody adds, edits or deletes one by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
