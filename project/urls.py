from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from project import health
from project.metrics import metrics_view

api_v1 = [
    path("auth/", include("accounts.api.urls")),
    path("", include("llm.api.urls")),
    path("", include("jobs.api.urls")),
    path("teams/", include("teams.api.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("api/v1/", include(api_v1)),
    # The OpenAI/Anthropic-compatible API: SDKs take http://host/v1 (or http://host) as base URL.
    path("v1/", include("llm.compat.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("account/", include("selfservice.urls")),
    path("sso/", include("sso.urls")),
    path("admin/dashboard/", include("llm.admin_dashboard")),
    path("admin/", admin.site.urls),
]

handler404 = "project.api.errors.handler404"
handler500 = "project.api.errors.handler500"
