"""Staff see and manage every team here. Saving goes through teams.services, like the API."""

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from budgets.admin import BudgetForm
from budgets.models import Budget
from budgets.services import budget_delete, budget_save
from project.errors import DomainError
from teams import services
from teams.models import Membership, Team, TeamApiKey


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    fields = ["user", "role", "is_default", "created_at"]
    readonly_fields = ["is_default", "created_at"]
    raw_id_fields = ["user"]


class TeamBudgetInline(admin.TabularInline):
    model = Budget
    form = BudgetForm  # the limit typed in dollars, stored in micro-dollars
    fk_name = "team"
    extra = 0
    fields = ["user", "period", "limit_usd", "limit_tokens"]
    raw_id_fields = ["user"]
    verbose_name = "budget (empty user: the team's own; a user: that member's within the team)"


class TeamApiKeyInline(admin.TabularInline):
    model = TeamApiKey
    extra = 0
    can_delete = False
    max_num = 0  # made by team admins through the API; revoked in the API keys admin
    fields = readonly_fields = ["api_key", "created_by"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "members", "created_at"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["service_user", "created_at"]
    inlines = [MembershipInline, TeamBudgetInline, TeamApiKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Members", ordering="member_count")
    def members(self, team: Team) -> int:
        return team.member_count

    def save_model(self, request: HttpRequest, obj: Team, form, change: bool) -> None:
        if change:
            obj.save()
            return
        created = services.team_create(name=obj.name, slug=obj.slug)
        obj.pk, obj.service_user, obj.created_at = (
            created.pk,
            created.service_user,
            created.created_at,
        )
        obj._state.adding, obj._state.db = False, created._state.db

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Memberships and budgets change through the services (their rules and side effects:
        removing a member revokes their team-scoped keys)."""
        team = form.instance
        rows = formset.save(commit=False)
        try:
            for row in formset.deleted_objects:
                if isinstance(row, Membership):
                    services.membership_remove(membership=row, keep_last_admin=False)
                else:
                    budget_delete(budget=row)
            for row in rows:
                if isinstance(row, Membership):
                    if row.pk is None:
                        services.membership_add(team=team, user=row.user, role=row.role)
                    else:
                        services.membership_role_set(membership=row, role=row.role)
                elif isinstance(row, Budget):
                    row.team = team
                    budget_save(budget=row)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        services.team_delete(team=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            services.team_delete(team=team)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "is_default", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__email", "team__name", "team__slug"]
    list_select_related = ["user", "team"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # add members on the team's page

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(membership=obj, keep_last_admin=False)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("user", "team"):
            services.membership_remove(membership=membership, keep_last_admin=False)
