from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.models import ApiKey, User

EMAIL_TAKEN = "An account with this email already exists."


class _EmailNormalised:
    """Emails are stored lower-cased and unique in any letter case, as the API's
    registration keeps them."""

    instance: User
    cleaned_data: dict

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        others = User.objects.with_email(email)
        if self.instance.pk is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(EMAIL_TAKEN, code="unique")
        return email


class UserCreationForm(_EmailNormalised, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)
        field_classes: dict = {}


class UserEditForm(_EmailNormalised, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


class PasswordSetForm(AdminPasswordChangeForm):
    """The admin's "change password" page, through the services: every session signed in with
    the old password ends, as when the user changes it through the API."""

    def save(self, commit: bool = True) -> User:
        if self.cleaned_data["set_usable_password"]:
            services.user_password_change(
                user=self.user, new_password=self.cleaned_data["password1"]
            )
        else:
            services.user_password_disable(user=self.user)
        return self.user


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Staff manage accounts through accounts.services: creating (``user_create``), passwords
    (``user_password_change``), deactivating (``user_deactivate``: keys revoked, sessions
    ended) and reactivating. Accounts are deactivated, not deleted: deleting would take their
    conversations, jobs and usage records with them."""

    add_form = UserCreationForm
    form = UserEditForm
    change_password_form = PasswordSetForm
    actions = ["deactivate", "activate"]
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_staff", "date_joined"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "name"]
    readonly_fields = ["last_login", "date_joined"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        if not change:
            created = services.user_create(
                email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
            )
            # The admin goes on with ``obj`` (its log entry, its redirect): make it the row.
            obj.pk, obj.password, obj.date_joined = (
                created.pk,
                created.password,
                created.date_joined,
            )
            obj._state.adding, obj._state.db = False, created._state.db
            return
        activity_changed = "is_active" in form.changed_data
        wanted_active = obj.is_active
        if activity_changed:
            obj.is_active = not wanted_active  # the service below makes that change
        super().save_model(request, obj, form, change)  # profile and permissions
        if activity_changed and not wanted_active:
            revoked = services.user_deactivate(user=obj)
            self.message_user(
                request, f"Deactivated {obj.email}: {revoked} API key(s) revoked, sessions ended."
            )
        elif activity_changed:
            services.user_activate(user=obj)

    @admin.action(description="Deactivate selected users (revoke keys, end sessions)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.filter(is_active=True))
        for user in users:
            services.user_deactivate(user=user)
        self.message_user(request, f"Deactivated {len(users)} user(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected users")
    def activate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.filter(is_active=False))
        for user in users:
            services.user_activate(user=user)
        self.message_user(request, f"Reactivated {len(users)} user(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "owner",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "prefix", "owner__email"]
    list_select_related = ["owner"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    # Staff see keys and revoke them (through the service); nothing else about a key changes,
    # and a revoked key stays on record instead of being deleted.
    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are issued through the API or `manage.py create_api_key`, which show the secret.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apikey")

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
