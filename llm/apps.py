from django.apps import AppConfig


class LlmConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "llm"
    verbose_name = "LLM"

    def ready(self) -> None:
        from jobs.registry import register, register_reconcile_step
        from llm.admission import reply_reservations_reconcile
        from llm.compat import edge
        from llm.completion import (
            completion_exhausted,
            completion_finished,
            completion_requeued,
            completion_retry_blocker,
            completion_run,
        )
        from llm.services import COMPLETION_JOB_KIND
        from llm.titles import TITLE_JOB_KIND, title_run
        from project.api.errors import register_error_shape

        register(
            COMPLETION_JOB_KIND,
            completion_run,
            on_terminal=completion_finished,
            on_retry=completion_requeued,
            retry_blocker=completion_retry_blocker,
            on_exhausted=completion_exhausted,
        )
        register(TITLE_JOB_KIND, title_run)
        register_reconcile_step("llm.reply_reservations", reply_reservations_reconcile)
        register_error_shape(edge.PREFIX, edge.error_body_for)
        self._invalidate_caches()

    @staticmethod
    def _invalidate_caches() -> None:
        """What the per-process caches hold changes here (project.hotcache)."""
        from django.db.models.signals import m2m_changed

        from llm.access import ACCESS
        from llm.models import LLMModel, ModelAccess, ModelFallback
        from llm.selectors import CATALOG
        from project.hotcache import bump, invalidate_on_change

        invalidate_on_change(CATALOG, LLMModel, ModelFallback)
        invalidate_on_change(ACCESS, ModelAccess)
        m2m_changed.connect(
            lambda **kwargs: bump(ACCESS),
            sender=ModelAccess.allowed_models.through,
            weak=False,
            dispatch_uid="hotcache:access:allowed_models",
        )
