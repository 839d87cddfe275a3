from django.apps import AppConfig


class SelfserviceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "selfservice"
    verbose_name = "Self-service page"
