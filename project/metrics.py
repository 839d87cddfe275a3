"""``/metrics``: django-prometheus' metrics plus Parley's own, correct across processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (scripts/run and the docker image set it) every web
process and every RQ worker (and its work horses) writes its samples to files in that directory
and a scrape adds them all up, so one scrape of any web process sees the whole machine. Without
it each process reports only itself. Gauges that describe shared state (queue depth, oldest
queued job) are computed at scrape time from PostgreSQL/Redis by collectors registered here."""

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# No auto_describe: describing would run the collectors (database queries) at start-up.
_scrape_registry = CollectorRegistry(auto_describe=False)


def register_scrape_collector(collector: Collector) -> None:
    """Add a collector computed at scrape time (once per process; repeated calls are ignored)."""
    try:
        _scrape_registry.register(collector)
    except ValueError:  # already registered (e.g. AppConfig.ready ran twice in tests)
        pass


def metrics_view(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry) + generate_latest(_scrape_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
