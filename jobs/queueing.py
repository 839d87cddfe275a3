"""Everything that touches RQ and Redis for jobs: delivery, cancel flags, heartbeats.
The database stays the source of truth; these are delivery mechanisms."""

import logging
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.queue import Queue as RQQueue

from project.redis import redis_client
from project.tracing import trace_carrier

logger = logging.getLogger("parley.jobs")

RUNNER = "jobs.runner.run_job"
RESULT_TTL = 300  # results are in the database; RQ's copy is only for the dashboard
FAILURE_TTL = 24 * 3600


def _cancel_key(job_id) -> str:
    return f"parley:job:{job_id}:cancel"


def _heartbeat_key(job_id) -> str:
    return f"parley:job:{job_id}:heartbeat"


def connection(queue: str = "default") -> redis.Redis:
    """The process's shared client for the queue's Redis (project.redis: one bounded, blocking
    pool), not django_rq.get_connection(), which builds a new client and pool on every call."""
    return redis_client(settings.RQ_QUEUES[queue]["URL"])


def rq_enqueue(job_id, queue: str, *, delay: float = 0) -> bool:
    """Put the job on its RQ queue now (or after ``delay`` seconds, via the worker's
    scheduler). Returns False, and logs, when Redis cannot be reached: the job stays queued in
    the database and ``reconcile_jobs`` delivers it later."""
    rq_queue = django_rq.get_queue(queue, commit_mode="auto", connection=connection(queue))
    options = {
        "job_id": str(job_id),
        "job_timeout": settings.JOBS_TIMEOUT,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
    }
    # The trace context of whoever queues the job (the POST's span) rides in its arguments,
    # so the worker's job span joins the same trace (project.tracing.job_span).
    carrier = trace_carrier()
    if carrier:
        options["trace_context"] = carrier
    try:
        if delay > 0:
            rq_queue.enqueue_in(timedelta(seconds=delay), RUNNER, str(job_id), **options)
        else:
            rq_queue.enqueue(RUNNER, str(job_id), **options)
    except redis.RedisError as exc:
        logger.warning(
            "Could not enqueue job; reconcile_jobs will deliver it",
            extra={"job_id": str(job_id), "error": type(exc).__name__},
        )
        return False
    return True


def rq_is_pending(job_id, queue: str) -> bool:
    """Whether RQ still holds the job waiting to run: scheduled, deferred, or queued and really
    on its queue's list. A worker killed between taking the job and starting it leaves it
    marked queued (or started) but on no list; only the database row says it never ran."""
    client = connection(queue)
    try:
        status = RQJob.fetch(str(job_id), connection=client).get_status(refresh=False)
    except NoSuchJobError:
        return False
    if status in (RQStatus.SCHEDULED, RQStatus.DEFERRED):
        return True
    if status != RQStatus.QUEUED:
        return False
    rq_queue = RQQueue(queue, connection=client)
    pipeline = client.pipeline(transaction=False)
    pipeline.lpos(rq_queue.key, str(job_id))
    pipeline.lpos(rq_queue.intermediate_queue_key, str(job_id))
    return any(position is not None for position in pipeline.execute())


def rq_discard(job_id, queue: str) -> None:
    """Take a not-yet-started job off RQ (best effort: the runner re-checks the database)."""
    try:
        RQJob.fetch(str(job_id), connection=connection(queue)).cancel()
    except (NoSuchJobError, InvalidJobOperation, redis.RedisError):
        pass


def rq_stop(job_id, queue: str) -> None:
    """Ask the worker running the job to kill its work horse (forking workers)."""
    try:
        send_stop_job_command(connection(queue), str(job_id))
    except (InvalidJobOperation, NoSuchJobError, redis.RedisError):
        pass


def cancel_flag_set(job_id, queue: str = "default") -> None:
    try:
        connection(queue).set(_cancel_key(job_id), "1", ex=24 * 3600)
    except redis.RedisError:
        pass


def cancel_flag_clear(job_id, queue: str = "default") -> None:
    try:
        connection(queue).delete(_cancel_key(job_id))
    except redis.RedisError:
        pass


def cancel_flag_is_set(job_id, queue: str = "default") -> bool:
    try:
        return bool(connection(queue).exists(_cancel_key(job_id)))
    except redis.RedisError:
        return False


def heartbeat_alive(job_id, queue: str = "default") -> bool:
    return bool(connection(queue).exists(_heartbeat_key(job_id)))


# Heartbeats and cancel flags of running jobs are read and written in batches by the process's
# watch (jobs.runner): one pipeline per beat for every job the process runs, not a timer thread
# or a round trip per job.


def heartbeats_refresh(pipeline, job_ids) -> None:
    """Add to ``pipeline``: these jobs' workers are alive for another JOBS_HEARTBEAT_TTL s."""
    ttl = settings.JOBS_HEARTBEAT_TTL
    for job_id in job_ids:
        pipeline.set(_heartbeat_key(job_id), "1", ex=ttl)


def cancel_flags_read(pipeline, job_ids) -> None:
    """Add to ``pipeline`` one MGET whose reply has a non-None entry per cancelled job."""
    pipeline.mget([_cancel_key(job_id) for job_id in job_ids])


def heartbeat_end(job_id, queue: str = "default") -> None:
    try:
        connection(queue).delete(_heartbeat_key(job_id))
    except redis.RedisError:
        pass
