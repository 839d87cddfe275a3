"""What an RQ worker runs for every job: ``run_job(job_id)``.

It claims the row (only a ``queued`` job can start), counts the attempt, keeps a heartbeat
while the handler runs, and records the outcome. Safe to call twice for the same job (a
duplicate queue entry finds it no longer queued and does nothing) and from threads."""

import logging
import os
import socket

from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from jobs import metrics, queueing, registry
from jobs.exceptions import PermanentJobError, TransientJobError
from jobs.models import Job, JobStatus
from jobs.services import job_schedule_retry, job_transition
from project.errors import InvalidTransition
from project.logging import bind_request_id, unbind_request_id

logger = logging.getLogger("parley.jobs")


def _claim(job_id: str) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.QUEUED:
            return None
        if job.next_attempt_at and job.next_attempt_at > timezone.now():
            # RQ's scheduler works in whole seconds and may release a retry early: put it
            # back for the rest of its backoff, so Retry-After is really honoured.
            remaining = (job.next_attempt_at - timezone.now()).total_seconds()
            queueing.rq_enqueue(job.pk, job.queue, delay=remaining)
            return None
        job = job_transition(
            job=job,
            to=JobStatus.IN_PROGRESS,
            attempts=F("attempts") + 1,
            started_at=timezone.now(),
            next_attempt_at=None,
            worker_name=f"{socket.gethostname()}:{os.getpid()}",
        )
    job.refresh_from_db(fields=["attempts"])
    return job


def run_job(job_id: str) -> None:
    """The RQ entry point. Outcomes are written to the job row, never raised to RQ."""
    token = bind_request_id(f"job-{job_id}")
    close_old_connections()
    try:
        job = _claim(job_id)
        if job is None:
            return
        kind = registry.kind_of(job.kind)
        if kind is None:
            job_transition(
                job=job, to=JobStatus.FAILED, last_error=f"No handler for kind {job.kind}."
            )
            return
        with queueing.Heartbeat(job.pk, job.queue):
            _run(job, kind.handler)
    finally:
        unbind_request_id(token)
        connection.close()  # handlers may run in threads: leave no connection behind


def _run(job: Job, handler) -> None:
    try:
        handler(job)
    except TransientJobError as exc:
        metrics.RETRIES.labels(kind=job.kind).inc()
        _settle(job_schedule_retry, job=job, error=str(exc), retry_after=exc.retry_after)
    except PermanentJobError as exc:
        _settle(job_transition, job=job, to=JobStatus.FAILED, last_error=str(exc))
    except Exception:
        logger.exception("Job handler crashed", extra={"job_id": str(job.pk), "kind": job.kind})
        _settle(
            job_transition,
            job=job,
            to=JobStatus.FAILED,
            last_error="Internal error while running the job.",
        )
    else:
        _settle(job_transition, job=job, to=JobStatus.COMPLETED, last_error="")
    if job.is_terminal:
        metrics.FINISHED.labels(kind=job.kind, status=job.status).inc()


def _settle(change, **arguments) -> None:
    """Record the outcome unless the job moved on meanwhile (cancelled while running)."""
    try:
        change(**arguments)
    except InvalidTransition:
        job = arguments["job"]
        job.refresh_from_db(fields=["status"])
        logger.info(
            "Job outcome not recorded: it is %s now", job.status, extra={"job_id": str(job.pk)}
        )
