"""The middleware chain of ``/v1/`` (served by its own ASGI handler, ``project.asgi``): the
project's chain minus the browser machinery, with compute-only hooks run in the event loop."""

from django.http import HttpRequest
from django.middleware.security import SecurityMiddleware
from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware


class _InlineHooks:
    """For a ``MiddlewareMixin`` whose hooks only compute (no I/O, no database): under ASGI
    run them in the event loop, not one thread hop each (``MiddlewareMixin`` hops to a thread
    for every ``process_request``/``process_response``/``process_view``)."""

    async def __acall__(self, request: HttpRequest):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class PrometheusBeforeInline(_InlineHooks, PrometheusBeforeMiddleware):
    pass


class PrometheusAfterInline(_InlineHooks, PrometheusAfterMiddleware):
    async def process_view(self, request, view_func, *args, **kwargs):
        return super().process_view(request, view_func, *args, **kwargs)


class SecurityInline(_InlineHooks, SecurityMiddleware):
    pass


# /v1/ (an API called by SDKs with keys) needs none of the browser machinery: no sessions,
# cookies, CSRF, messages, static files, frame options or slash redirects (its URLs accept
# both forms). Served by its own ASGI handler (project.asgi) with this chain, it is fully
# async: no thread hop before the view.
V1_DROPPED = {
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
}
V1_INLINE = {
    "django_prometheus.middleware.PrometheusBeforeMiddleware": (
        "project.v1_middleware.PrometheusBeforeInline"
    ),
    "django_prometheus.middleware.PrometheusAfterMiddleware": (
        "project.v1_middleware.PrometheusAfterInline"
    ),
    "django.middleware.security.SecurityMiddleware": "project.v1_middleware.SecurityInline",
}


def v1_middleware(middleware: list[str]) -> list[str]:
    """The project's middleware as ``/v1/`` runs it (see ``V1_DROPPED``, ``V1_INLINE``)."""
    return [V1_INLINE.get(path, path) for path in middleware if path not in V1_DROPPED]
