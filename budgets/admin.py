"""Staff set budgets and rate limits here; saving goes through the same services as code."""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from budgets import selectors, services
from budgets.models import Budget, BudgetLedger, RateLimit, Reservation, ReservationStatus
from project.errors import DomainError
from project.money import dollars as _dollars
from project.money import micros, usd


class BudgetLedgerInline(admin.TabularInline):
    model = BudgetLedger
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "period_start",
        "spent_usd",
        "reserved_usd",
        "spent_tokens",
        "reserved_tokens",
    ]
    ordering = ["-period_start"]
    max_num = 0  # the ledger is written by reservations only

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Spent USD")
    def spent_usd(self, ledger: BudgetLedger) -> str:
        return _dollars(ledger.spent_micros)

    @admin.display(description="Reserved USD")
    def reserved_usd(self, ledger: BudgetLedger) -> str:
        return _dollars(ledger.reserved_micros)


class BudgetForm(forms.ModelForm):
    """Staff type the limit in dollars; it is stored in micro-dollars."""

    limit_usd = forms.DecimalField(
        label="Limit USD",
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=6,
        help_text="USD per period. Empty: no money cap.",
    )

    class Meta:
        model = Budget
        fields = ["user", "api_key", "team", "period", "limit_usd", "limit_tokens"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.limit_micros is not None:
            self.initial["limit_usd"] = usd(self.instance.limit_micros)

    def _post_clean(self) -> None:
        limit = self.cleaned_data.get("limit_usd")
        self.instance.limit_micros = micros(limit) if limit is not None else None
        super()._post_clean()


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "user",
        "api_key",
        "team",
        "period",
        "limit_usd",
        "limit_tokens",
        "spent_this_period",
        "remaining_this_period",
    ]
    list_filter = ["period"]
    search_fields = [
        "user__email",
        "api_key__name",
        "api_key__prefix",
        "api_key__owner__email",
        "team__slug",
    ]
    raw_id_fields = ["user", "api_key", "team"]
    inlines = [BudgetLedgerInline]
    form = BudgetForm

    @admin.display(description="Limit USD", ordering="limit_micros")
    def limit_usd(self, budget: Budget) -> str:
        return _dollars(budget.limit_micros)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return selectors.budget_list()

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # One query for the shown page's ledgers, not one per row.
        budgets = list(changelist.result_list)
        self._statuses = dict(
            zip((b.pk for b in budgets), selectors.budget_statuses_of(budgets), strict=True)
        )
        return changelist

    def _status(self, budget: Budget):
        statuses = getattr(self, "_statuses", {})
        return statuses.get(budget.pk) or selectors.budget_statuses_of([budget])[0]

    @admin.display(description="Spent (reserved)")
    def spent_this_period(self, budget: Budget) -> str:
        status = self._status(budget)
        parts = []
        if budget.limit_micros is not None:
            parts.append(f"{_dollars(status.spent_micros)} ({_dollars(status.reserved_micros)})")
        if budget.limit_tokens is not None:
            parts.append(f"{status.spent_tokens} ({status.reserved_tokens}) tokens")
        return " · ".join(parts)

    @admin.display(description="Remaining")
    def remaining_this_period(self, budget: Budget) -> str:
        status = self._status(budget)
        parts = []
        if status.remaining_micros is not None:
            parts.append(_dollars(status.remaining_micros))
        if status.remaining_tokens is not None:
            parts.append(f"{status.remaining_tokens} tokens")
        return " · ".join(parts)

    def save_model(self, request, obj: Budget, form, change) -> None:
        services.budget_save(budget=obj)

    def delete_model(self, request, obj: Budget) -> None:
        services.budget_delete(budget=obj)

    def delete_queryset(self, request, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            services.budget_delete(budget=budget)


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "user",
        "api_key",
        "team",
        "requests_per_minute",
        "tokens_per_minute",
    ]
    search_fields = ["user__email", "api_key__name", "api_key__prefix", "team__slug"]
    raw_id_fields = ["user", "api_key", "team"]
    list_select_related = ["user", "api_key", "team"]


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "user",
        "api_key",
        "model",
        "reference",
        "amount_usd",
        "actual_usd",
        "amount_tokens",
        "actual_tokens",
        "status",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["user__email", "reference", "model"]
    list_select_related = ["user", "api_key"]
    actions = ["release"]
    # Read-only detail with money in dollars (stored as micro-dollars).
    fields = readonly_fields = [
        "user",
        "api_key",
        "reference",
        "model",
        "status",
        "amount_usd",
        "actual_usd",
        "amount_tokens",
        "actual_tokens",
        "created_at",
        "settled_at",
    ]

    @admin.display(description="Amount USD", ordering="amount_micros")
    def amount_usd(self, reservation: Reservation) -> str:
        return _dollars(reservation.amount_micros)

    @admin.display(description="Actual USD", ordering="actual_micros")
    def actual_usd(self, reservation: Reservation) -> str:
        return _dollars(reservation.actual_micros)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Release selected held reservations", permissions=["view"])
    def release(self, request: HttpRequest, queryset: QuerySet[Reservation]) -> None:
        released = 0
        for reservation in queryset.filter(status=ReservationStatus.HELD):
            try:
                services.reservation_release(reservation=reservation)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            released += 1
        self.message_user(request, f"Released {released} reservation(s).", messages.SUCCESS)
