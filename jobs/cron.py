"""Periodic maintenance run by RQ's cron scheduler: ``python manage.py rqcron jobs.cron``
(started by scripts/run and by the ``scheduler`` service in docker/compose.yml).

It goes on the ``maintenance`` queue, served by a worker of its own (``rqworker maintenance``:
scripts/run, the compose ``maintenance`` service): on ``default`` it waited behind every
completion a busy worker had queued, so recovery took 21-30 s longer under load."""

from django.conf import settings
from rq import cron

from jobs.tasks import reconcile_jobs_task

MAINTENANCE_QUEUE = "maintenance"

cron.register(
    reconcile_jobs_task,
    queue_name=MAINTENANCE_QUEUE,
    interval=settings.JOBS_RECONCILE_INTERVAL,
    job_timeout=120,
    result_ttl=600,
)
