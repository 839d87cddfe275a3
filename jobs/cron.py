"""Periodic maintenance run by RQ's cron scheduler: ``python manage.py rqcron jobs.cron``
(started by scripts/run and by the ``scheduler`` service in docker/compose.yml)."""

from django.conf import settings
from rq import cron

from jobs.tasks import reconcile_jobs_task

cron.register(
    reconcile_jobs_task,
    queue_name="default",
    interval=settings.JOBS_RECONCILE_INTERVAL,
    job_timeout=120,
    result_ttl=600,
)
