from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self) -> None:
        from jobs.metrics import QueueCollector
        from project.metrics import register_scrape_collector

        register_scrape_collector(QueueCollector())
