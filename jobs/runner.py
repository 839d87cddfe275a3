"""What an RQ worker runs for every job: ``run_job(job_id)``.

It claims the row (only a ``queued`` job can start), counts the attempt, registers it with the
process's watch (heartbeat, cancel, time limit, worker shutdown), runs the handler and records
the outcome. Safe to call twice for the same job (a duplicate queue entry finds it no longer
queued and does nothing) and from many threads at once (jobs.worker.ThreadPoolWorker).

A running thread cannot be killed, so stopping is cooperative: the handler calls
``job_watchdog(job).check()`` between units of work (each streamed delta), which costs an
attribute read and a clock read. One monitor thread per process does the Redis side for every
running job at once: it reads all cancel flags in one MGET every ``WATCH_POLL_SECONDS`` and
refreshes all heartbeats in the same pipeline every JOBS_HEARTBEAT_TTL/3 seconds."""

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import redis
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from jobs import metrics, queueing, registry
from jobs.exceptions import (
    JobCancelled,
    JobInterrupted,
    JobTimedOut,
    PermanentJobError,
    TransientJobError,
)
from jobs.models import Job, JobStatus
from jobs.services import job_schedule_retry, job_transition
from project.errors import InvalidTransition
from project.logging import bind_request_id, unbind_request_id
from project.tracing import job_span

logger = logging.getLogger("parley.jobs")

HANDED_BACK = "handed_back"  # run_job's result when worker shutdown sent the job back
WATCH_POLL_SECONDS = 0.1  # cancel flags are read this often (one MGET for all running jobs)


class Watchdog:
    """One running attempt, as its handler sees it. ``check()`` raises ``JobCancelled``,
    ``JobInterrupted`` or ``JobTimedOut`` when the handler must stop, and is cheap enough to
    call on every streamed token."""

    __slots__ = ("deadline", "job_id", "queue", "stop", "timeout")

    def __init__(self, job_id: str, queue: str, timeout: float) -> None:
        self.job_id = job_id
        self.queue = queue
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.stop: type[Exception] | None = None  # set by the monitor thread

    def check(self) -> None:
        stop = self.stop
        if stop is None and time.monotonic() < self.deadline:
            return
        if stop is JobCancelled:
            raise JobCancelled("The job was cancelled.")
        if stop is JobInterrupted:
            raise JobInterrupted("The worker is shutting down; the job goes back to the queue.")
        raise JobTimedOut(f"The job ran longer than its limit of {self.timeout:g} seconds.")


BeatContributor = Callable[[object], None]  # adds its own commands to the beat's pipeline


class _Watch:
    """The jobs this process is running, and the one thread that keeps their heartbeats and
    watches their cancel flags, whatever their number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, Watchdog] = {}
        self._fresh: set[str] = set()  # registered since the last beat: beat them at once
        self._contributors: dict[int, tuple[object, BeatContributor]] = {}
        self._interrupting = False
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._last_error_logged = 0.0

    @contextlib.contextmanager
    def attempt(self, job: Job) -> Iterator[Watchdog]:
        watchdog = Watchdog(str(job.pk), job.queue, float(settings.JOBS_TIMEOUT))
        with self._lock:
            if self._interrupting:
                watchdog.stop = JobInterrupted
            self._attempts[watchdog.job_id] = watchdog
            self._fresh.add(watchdog.job_id)
            self._ensure_thread()
        try:
            yield watchdog
        finally:
            with self._lock:
                self._attempts.pop(watchdog.job_id, None)
                self._fresh.discard(watchdog.job_id)
            queueing.heartbeat_end(watchdog.job_id, watchdog.queue)

    def watchdog(self, job_id: str) -> Watchdog | None:
        return self._attempts.get(job_id)

    def running(self) -> int:
        return len(self._attempts)

    def interrupt_all(self) -> int:
        """Worker shutdown: every running job (and any that starts from now on) stops at its
        next check and goes back to its queue."""
        with self._lock:
            self._interrupting = True
            for watchdog in self._attempts.values():
                watchdog.stop = JobInterrupted
            return len(self._attempts)

    def add_contributor(self, client, contributor: BeatContributor) -> None:
        """Run ``contributor(pipeline)`` on every beat, in the pipeline of ``client`` (the
        worker adds RQ's own execution heartbeats, so one round trip keeps both)."""
        with self._lock:
            self._contributors[id(contributor)] = (client, contributor)
            self._ensure_thread()

    def remove_contributor(self, contributor: BeatContributor) -> None:
        with self._lock:
            self._contributors.pop(id(contributor), None)

    def _ensure_thread(self) -> None:
        # Called with the lock held. A forked work horse inherits the registry but not the thread.
        if self._thread is not None and self._owner_pid == os.getpid():
            return
        self._owner_pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="jobs-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        beat_every = max(settings.JOBS_HEARTBEAT_TTL / 3, WATCH_POLL_SECONDS)
        next_beat = 0.0
        while True:
            time.sleep(WATCH_POLL_SECONDS)
            beat_all = time.monotonic() >= next_beat
            try:
                self._tick(beat_all)
            except redis.RedisError as exc:
                if time.monotonic() - self._last_error_logged > 60:
                    self._last_error_logged = time.monotonic()
                    logger.warning("Job watch could not reach Redis: %s", type(exc).__name__)
                continue
            except Exception:
                logger.exception("Job watch failed")
                continue
            if beat_all:
                next_beat = time.monotonic() + beat_every

    def _tick(self, beat_all: bool) -> None:
        with self._lock:
            attempts = list(self._attempts.values())
            fresh, self._fresh = self._fresh, set()
            contributors = list(self._contributors.values()) if beat_all else []
        if not attempts and not contributors:
            return
        # One pipeline per Redis client (in practice one): every job of the process in one trip.
        pipelines: dict[int, tuple[object, list[Watchdog]]] = {}
        for watchdog in attempts:
            client = queueing.connection(watchdog.queue)
            pipelines.setdefault(id(client), (client.pipeline(transaction=False), []))[1].append(
                watchdog
            )
        for client, _ in contributors:
            pipelines.setdefault(id(client), (client.pipeline(transaction=False), []))
        for pipeline, watched in pipelines.values():
            ids = [w.job_id for w in watched]
            if ids:
                queueing.cancel_flags_read(pipeline, ids)
                beating = ids if beat_all else [i for i in ids if i in fresh]
                queueing.heartbeats_refresh(pipeline, beating)
        for client, contributor in contributors:
            contributor(pipelines[id(client)][0])
        for pipeline, watched in pipelines.values():
            replies = pipeline.execute()
            if watched:
                for watchdog, flag in zip(watched, replies[0], strict=True):
                    if flag is not None and watchdog.stop is None:
                        watchdog.stop = JobCancelled


watch = _Watch()


def job_watchdog(job: Job) -> Watchdog:
    """The running attempt's watchdog (a fresh, unwatched one outside the runner: it then only
    enforces JOBS_TIMEOUT)."""
    return watch.watchdog(str(job.pk)) or Watchdog(
        str(job.pk), job.queue, float(settings.JOBS_TIMEOUT)
    )


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


def run_job(job_id: str, trace_context: dict[str, str] | None = None) -> str | None:
    """The RQ entry point. Outcomes are written to the job row, never raised to RQ; the
    returned status (or ``HANDED_BACK``) is only what RQ's dashboard shows as the result.
    ``trace_context`` is the W3C trace context of whoever queued it (tracing on)."""
    with job_span(job_id=str(job_id), carrier=trace_context) as span:
        return _run_job(job_id, span)


def _run_job(job_id: str, span) -> str | None:
    token = bind_request_id(f"job-{job_id}")
    close_old_connections()
    try:
        job = _claim(job_id)
        if job is None:
            return None
        if span.is_recording():
            span.update_name(f"job {job.kind}")
            span.set_attributes(
                {
                    "parley.job.kind": job.kind,
                    "parley.job.attempt": job.attempts,
                    "messaging.destination.name": job.queue,
                }
            )
        kind = registry.kind_of(job.kind)
        if kind is None:
            job_transition(
                job=job, to=JobStatus.FAILED, last_error=f"No handler for kind {job.kind}."
            )
            return job.status
        with watch.attempt(job):
            return _run(job, kind.handler)
    finally:
        unbind_request_id(token)
        connection.close()  # handlers run in threads: leave no connection behind


def _run(job: Job, handler) -> str:
    try:
        handler(job)
    except JobInterrupted:
        return _hand_back(job)
    except JobCancelled:
        pass  # job_cancel already recorded it
    except TransientJobError as exc:
        metrics.RETRIES.labels(kind=job.kind).inc()
        _settle(job_schedule_retry, job=job, error=str(exc), retry_after=exc.retry_after)
    except PermanentJobError as exc:  # JobTimedOut too
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
    return job.status


def _hand_back(job: Job) -> str:
    """Worker shutdown: queue the job again with its attempt given back. The worker puts it on
    RQ once RQ has recorded this execution (if it cannot, reconcile_jobs will)."""
    try:
        job_transition(
            job=job,
            to=JobStatus.QUEUED,
            attempts=F("attempts") - 1,
            next_attempt_at=None,
            worker_name="",
        )
    except InvalidTransition:  # cancelled meanwhile: the cancel stands
        job.refresh_from_db(fields=["status"])
        return job.status
    logger.info("Job handed back at worker shutdown", extra={"job_id": str(job.pk)})
    return HANDED_BACK


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
