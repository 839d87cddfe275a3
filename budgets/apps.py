from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "budgets"
    verbose_name = "Spend controls"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from accounts.models import User
        from accounts.quotas import register_budget_reader
        from budgets.selectors import budget_statuses
        from budgets.services import budget_default_create_for_new_user

        register_budget_reader(budget_statuses)
        # A signal, not a call in accounts.services: accounts must not know budgets, and this
        # also catches users made by the admin, createsuperuser and tests.
        post_save.connect(
            budget_default_create_for_new_user, sender=User, dispatch_uid="budgets_default"
        )
        from budgets.models import Budget, RateLimit
        from budgets.selectors import BUDGETS, LIMITS
        from project.hotcache import invalidate_on_change

        invalidate_on_change(BUDGETS, Budget)
        invalidate_on_change(LIMITS, RateLimit)
