from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from accounts import services
        from accounts.api import schema  # noqa: F401  registers the auth schemes with drf-spectacular
        from accounts.api.tokens import user_refresh_tokens_revoke

        services.register_session_revoker(user_refresh_tokens_revoke)
        # Revoking a key, deactivating a user, any change: every process forgets them at once.
        from accounts.models import ApiKey, User
        from accounts.selectors import AUTH
        from project.hotcache import invalidate_on_change

        invalidate_on_change(AUTH, User, ApiKey)
