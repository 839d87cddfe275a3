from django.apps import AppConfig


class LlmConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "llm"
    verbose_name = "LLM"

    def ready(self) -> None:
        from accounts.quotas import register_usage_counter
        from jobs.registry import register
        from llm.completion import completion_finished, completion_requeued, completion_run
        from llm.selectors import usage_tokens_since
        from llm.services import COMPLETION_JOB_KIND

        register(
            COMPLETION_JOB_KIND,
            completion_run,
            on_terminal=completion_finished,
            on_retry=completion_requeued,
        )
        register_usage_counter(usage_tokens_since)
