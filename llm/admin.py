from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from llm.catalog import provider_target
from llm.models import LLMModel


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "display_name",
        "provider",
        "provider_model",
        "context_window",
        "max_output_tokens",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "enabled",
        "is_standin",
        "callable_now",
    ]
    list_editable = ["input_price_per_mtok", "output_price_per_mtok", "enabled"]
    list_filter = ["provider", "enabled", "is_standin"]
    search_fields = ["slug", "display_name", "provider_model"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["enable", "disable"]
    fieldsets = (
        (None, {"fields": ("slug", "display_name", "enabled")}),
        ("Provider", {"fields": ("provider", "provider_model", "base_url", "api_key_env", "is_standin")}),
        ("Limits", {"fields": ("context_window", "max_output_tokens")}),
        ("Prices (USD per million tokens)", {"fields": ("input_price_per_mtok", "output_price_per_mtok")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(boolean=True, description="Callable now")
    def callable_now(self, model: LLMModel) -> bool:
        return provider_target(model) is not None

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"Enabled {count} model(s).", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} model(s).", messages.SUCCESS)
