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
