from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from accounts import services
        from accounts.api import schema  # noqa: F401  registers the auth schemes with drf-spectacular
        from accounts.api.tokens import user_refresh_tokens_revoke

        services.register_session_revoker(user_refresh_tokens_revoke)
