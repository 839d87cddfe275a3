from django.apps import AppConfig


class SsoConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sso"
    verbose_name = "Single sign-on"

    def ready(self) -> None:
        from sso import checks  # noqa: F401  registers the sign-in settings check
