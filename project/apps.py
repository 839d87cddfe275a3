from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project package as an app only so that tracing is set up in ``ready()``: after
    settings, before the WSGI/ASGI handler loads the middleware the Django instrumentation
    adds, and in every process (web, workers, commands)."""

    name = "project"
    label = "parley_project"
    verbose_name = "Parley"

    def ready(self) -> None:
        from project.tracing import tracing_setup

        tracing_setup()
