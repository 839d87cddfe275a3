from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import content_disposition_header

from accounts.admin import UserAdmin
from accounts.models import User
from audit.services import audit_record
from budgets.periods import month_start
from llm.catalog import model_is_callable
from llm.exports import conversation_export
from llm.models import Conversation, LLMModel, Message, ModelAccess, ModelFallback, Usage
from llm.selectors import CATALOG
from llm.services import conversation_delete, conversation_update
from project.errors import DomainError
from project.hotcache import bump
from project.money import dollars, usd


class ModelFallbackInline(admin.TabularInline):
    """The models tried, in order, when a reply's attempts on this one run out on transient
    errors (timeouts, 429, 5xx)."""

    model = ModelFallback
    fk_name = "model"
    extra = 1
    fields = ["position", "fallback"]
    ordering = ["position"]
    verbose_name = "fallback model"


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
    inlines = [ModelFallbackInline]
    fieldsets = (
        (None, {"fields": ("slug", "display_name", "enabled")}),
        (
            "Provider",
            {"fields": ("provider", "provider_model", "base_url", "api_key_env", "is_standin")},
        ),
        ("Limits", {"fields": ("context_window", "max_output_tokens")}),
        (
            "Prices (USD per million tokens)",
            {"fields": ("input_price_per_mtok", "output_price_per_mtok")},
        ),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(boolean=True, description="Callable now")
    def callable_now(self, model: LLMModel) -> bool:
        return model_is_callable(model)

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        count = _models_enable(queryset, enabled=True)
        self.message_user(request, f"Enabled {count} model(s).", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        count = _models_enable(queryset, enabled=False)
        self.message_user(request, f"Disabled {count} model(s).", messages.SUCCESS)


@transaction.atomic
def _models_enable(queryset: QuerySet[LLMModel], *, enabled: bool) -> int:
    """One UPDATE, and one audit event per model whose state it changed (a bulk update sends
    no signal, so django-auditlog would not see it)."""
    changing = list(queryset.exclude(enabled=enabled).only("pk", "slug", "enabled"))
    LLMModel.objects.filter(pk__in=[m.pk for m in changing]).update(enabled=enabled)
    bump(CATALOG)  # a bulk update sends no signal: every process forgets the old entries
    for model in changing:
        audit_record(
            action="llm_model.enabled" if enabled else "llm_model.disabled",
            target=model,
            changes={"enabled": (not enabled, enabled)},
        )
    return queryset.count()


def _parts_summary(parts: list) -> list[str]:
    """What a message holds besides its text (images, tool calls and results), for staff."""
    summary = []
    for part in parts or ():
        kind = part.get("type")
        if kind == "image":
            summary.append("[image]")
        elif kind == "tool_call":
            summary.append(f"[tool call {part.get('name')}({part.get('arguments')})]")
        elif kind == "tool_result":
            summary.append(f"[tool result {part.get('tool_call_id')}: {part.get('content')}]")
    return summary


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ["position"]
    fields = [
        "position",
        "role",
        "status",
        "content_preview",
        "finish_reason",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency_ms",
        "error",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="content")
    def content_preview(self, message: Message) -> str:
        text = " ".join(filter(None, [message.content, *_parts_summary(message.parts)]))
        return text if len(text) <= 300 else text[:300] + "…"

    @admin.display(description="cost (USD)")
    def cost(self, message: Message) -> str:
        return dollars(message.cost_micros)


class ConversationAdminForm(forms.ModelForm):
    """Staff edit what owners may edit through the API, checked by the same service."""

    class Meta:
        model = Conversation
        fields = ["title", "system_prompt", "temperature", "max_tokens", "archived"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        temperature = cleaned.get("temperature")
        params = {
            "temperature": float(temperature) if temperature is not None else None,
            "max_tokens": cleaned.get("max_tokens"),
        }
        try:
            # A dry run of the service on an unsaved copy: its rules, without writing.
            conversation_update(
                conversation=Conversation.objects.get(pk=self.instance.pk),
                params=params,
                save=False,
            )
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Oversight of conversations. Every write goes through llm.services: an edit through
    ``conversation_update``, a delete through ``conversation_delete`` (which first cancels a
    reply still being written)."""

    form = ConversationAdminForm
    list_display = ["__str__", "owner", "model", "archived", "created_at", "updated_at"]
    list_filter = [
        ("model", admin.RelatedOnlyFieldListFilter),
        ("owner", admin.RelatedOnlyFieldListFilter),
        "archived",
        "created_at",
    ]
    search_fields = ["title", "owner__email", "=id"]
    list_select_related = ["owner", "model"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "owner", "model", "created_at", "updated_at", "export_links"]
    fields = [
        "id",
        "owner",
        "export_links",
        "title",
        "model",
        "system_prompt",
        "temperature",
        "max_tokens",
        "archived",
        "created_at",
        "updated_at",
    ]
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are started by their owners through the API

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [
            path("<uuid:object_id>/export/<str:export_format>/", export, name="llm_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest, object_id, export_format: str) -> HttpResponse:
        """The same file the owner gets from the API's export/ (the whole tree as JSON with
        ``?all=true``)."""
        conversation = self.get_object(request, str(object_id))
        if conversation is None or not self.has_view_permission(request, conversation):
            raise Http404
        try:
            exported = conversation_export(
                conversation=conversation,
                export_format=export_format,
                whole_tree=request.GET.get("all") == "true",
            )
        except DomainError as exc:
            return HttpResponseBadRequest(exc.message)
        response = HttpResponse(exported.body, content_type=exported.content_type)
        response["Content-Disposition"] = content_disposition_header(True, exported.filename)
        return response

    @admin.display(description="export")
    def export_links(self, conversation: Conversation) -> str:
        if conversation.pk is None:
            return "-"
        base = reverse("admin:llm_export", args=[conversation.pk, "json"]).rsplit("json/", 1)[0]
        return format_html(
            '<a href="{}json/">JSON</a> · <a href="{}json/?all=true">JSON, every branch</a> · '
            '<a href="{}markdown/">Markdown</a>',
            base,
            base,
            base,
        )

    def save_model(self, request: HttpRequest, obj: Conversation, form, change: bool) -> None:
        temperature = form.cleaned_data.get("temperature")
        conversation_update(
            conversation=Conversation.objects.get(pk=obj.pk),
            title=form.cleaned_data["title"],
            system_prompt=form.cleaned_data["system_prompt"],
            params={
                "temperature": float(temperature) if temperature is not None else None,
                "max_tokens": form.cleaned_data.get("max_tokens"),
            },
            archived=form.cleaned_data["archived"],
        )

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        conversation_delete(conversation=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        for conversation in queryset:
            conversation_delete(conversation=conversation)


@admin.register(Usage)
class UsageAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "user",
        "api_key",
        "model",
        "input_tokens",
        "output_tokens",
        "cost",
    ]
    list_filter = [("model", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["user__email", "api_key__prefix", "api_key__name"]
    list_select_related = ["user", "model", "api_key"]
    date_hierarchy = "created_at"
    exclude = ["cost_micros"]
    readonly_fields = ["cost"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="cost (USD)", ordering="cost_micros")
    def cost(self, usage: Usage) -> str:
        return dollars(usage.cost_micros)


@admin.register(ModelAccess)
class ModelAccessAdmin(admin.ModelAdmin):
    """Restrict a user, one API key or a team to the chosen models (none chosen: no model at
    all)."""

    list_display = ["__str__", "user", "api_key", "team", "models_allowed"]
    search_fields = ["user__email", "api_key__name", "api_key__prefix", "team__slug"]
    raw_id_fields = ["user", "api_key", "team"]
    filter_horizontal = ["allowed_models"]
    list_select_related = ["user", "api_key", "team"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelAccess]:
        return super().get_queryset(request).prefetch_related("allowed_models")

    @admin.display(description="allowed models")
    def models_allowed(self, access: ModelAccess) -> str:
        return ", ".join(model.slug for model in access.allowed_models.all()) or "(none)"


def _this_month(field: str) -> Subquery:
    rows = (
        Usage.objects.filter(user=OuterRef("pk"), created_at__gte=month_start())
        .order_by()
        .values("user")
        .annotate(total=Sum(field))
        .values("total")
    )
    return Subquery(rows)


admin.site.unregister(User)


@admin.register(User)
class UserWithUsageAdmin(UserAdmin):
    """The accounts admin plus this month's usage, computed in the list's own query."""

    list_display = [*UserAdmin.list_display, "tokens_this_month", "cost_this_month"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                month_input=Coalesce(_this_month("input_tokens"), 0),
                month_output=Coalesce(_this_month("output_tokens"), 0),
                month_cost_micros=Coalesce(_this_month("cost_micros"), 0),
            )
        )

    @admin.display(description="tokens this month", ordering="month_input")
    def tokens_this_month(self, user: User) -> int:
        return user.month_input + user.month_output

    @admin.display(description="cost this month (USD)", ordering="month_cost_micros")
    def cost_this_month(self, user: User) -> str:
        return f"{usd(user.month_cost_micros):.2f}"


# The compatible API's call records (read-only) live with the API in llm/compat.
from llm.compat.admin import GatewayCallAdmin  # noqa: E402, F401
