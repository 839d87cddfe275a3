"""Job metrics: finished jobs and retries (counted where they happen, summed across worker
processes in multiprocess mode), and queue depth / oldest queued age computed at scrape time
from the database, which is the source of truth."""

import logging

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("parley.jobs")

FINISHED = Counter(
    "parley_jobs_finished_total",
    "Jobs that reached a final status in a worker, by kind and status.",
    ["kind", "status"],
)
RETRIES = Counter(
    "parley_jobs_retries_total",
    "Transient failures that were scheduled for another attempt.",
    ["kind"],
)


class QueueCollector(Collector):
    """``parley_jobs_queued`` and ``parley_jobs_oldest_queued_age_seconds`` per queue."""

    def collect(self):
        from jobs.selectors import queue_depths

        depth = GaugeMetricFamily(
            "parley_jobs_queued", "Jobs waiting to run, per queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "parley_jobs_oldest_queued_age_seconds",
            "Age of the oldest job waiting to run, per queue (0 when none).",
            labels=["queue"],
        )
        in_progress = GaugeMetricFamily(
            "parley_jobs_in_progress", "Jobs running now, per queue.", labels=["queue"]
        )
        now = timezone.now()
        try:
            depths = queue_depths()
        except DatabaseError:  # the rest of /metrics is still worth serving
            logger.warning("Queue metrics unavailable: database error", exc_info=True)
            return
        for row in depths:
            depth.add_metric([row.queue], row.queued)
            age.add_metric([row.queue], row.oldest_age_seconds(now) or 0)
            in_progress.add_metric([row.queue], row.running)
        yield depth
        yield age
        yield in_progress
