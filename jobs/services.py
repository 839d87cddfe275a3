"""Writes for jobs: create and enqueue on commit, the one status-transition function, cancel,
retry, and recovery of jobs whose queue entry or worker was lost."""

import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs import queueing, registry
from jobs.models import ALLOWED_TRANSITIONS, TERMINAL_STATUSES, Job, JobStatus
from project.errors import Conflict, IdempotencyKeyReused, InvalidTransition

logger = logging.getLogger("parley.jobs")


def job_transition(*, job: Job, to: str, **fields: Any) -> Job:
    """Move ``job`` from the status it has in memory to ``to``, writing ``fields`` with it.

    The UPDATE is conditional on the stored status, so a racing cancel and worker cannot both
    win; the loser gets ``InvalidTransition`` naming the status the job really has. Terminal and
    retry hooks of the job's kind run after the change."""
    if to not in ALLOWED_TRANSITIONS[job.status]:
        raise InvalidTransition(
            f"A {job.status} job cannot become {to}.",
            code="invalid_transition",
            details={"status": job.status},
        )
    if to in TERMINAL_STATUSES:
        fields.setdefault("finished_at", timezone.now())
    updated = Job.objects.filter(pk=job.pk, status=job.status).update(status=to, **fields)
    if not updated:
        current = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        raise InvalidTransition(
            f"The job is {current} now; it cannot become {to}.",
            code="invalid_transition",
            details={"status": current},
        )
    previous = job.status
    job.status = to
    for name, value in fields.items():
        setattr(job, name, value)
    _run_hook(job, previous)
    return job


def _run_hook(job: Job, previous: str) -> None:
    kind = registry.kind_of(job.kind)
    if kind is None:
        return
    hook = None
    if job.status in TERMINAL_STATUSES:
        hook = kind.on_terminal
    elif job.status == JobStatus.QUEUED and previous in (JobStatus.FAILED, JobStatus.CANCELLED):
        hook = kind.on_retry
    if hook is None:
        return
    try:
        hook(job)
    except Exception:  # a hook must not undo a status change that already happened
        logger.exception("Job hook failed", extra={"job_id": str(job.pk), "kind": job.kind})


def _enqueue_on_commit(job: Job, *, delay: float = 0) -> None:
    job_id, queue = job.pk, job.queue

    def deliver() -> None:
        if queueing.rq_enqueue(job_id, queue, delay=delay):
            Job.objects.filter(pk=job_id).update(enqueued_at=timezone.now())

    transaction.on_commit(deliver)


def _same_request(existing: Job, fingerprint: str | None) -> tuple[Job, bool]:
    if (existing.request_fingerprint or None) != (fingerprint or None):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request."
        )
    return existing, False


def job_create(
    *,
    kind: str,
    owner,
    payload: dict[str, Any],
    queue: str = "default",
    idempotency_key: str | None = None,
    request_fingerprint: str | None = None,
) -> tuple[Job, bool]:
    """Create a ``queued`` job in the caller's transaction and enqueue it when that commits.

    With an ``idempotency_key`` already used by ``owner``: the same ``request_fingerprint``
    returns the existing job and ``created=False``; a different one is a 422. If Redis is down
    at commit, the job stays queued in the database for ``reconcile_jobs``."""
    if idempotency_key:
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_request(existing, request_fingerprint)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                owner=owner,
                payload=payload,
                queue=queue,
                max_attempts=settings.JOBS_MAX_ATTEMPTS,
                idempotency_key=idempotency_key or None,
                request_fingerprint=request_fingerprint or "",
            )
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = Job.objects.get(owner=owner, idempotency_key=idempotency_key)
        return _same_request(existing, request_fingerprint)
    _enqueue_on_commit(job)
    return job, True


def job_cancel_requested(job_id) -> bool:
    """For handlers, between units of work: has someone asked this job to stop?"""
    return queueing.cancel_flag_is_set(job_id)


def job_cancel(*, job: Job) -> Job:
    """Cancel a queued job at once, or stop a running one: its handler is told through a flag
    it checks, a forking worker's work horse is killed, and the job is marked ``cancelled``.
    Finished jobs answer 409."""
    if job.status == JobStatus.QUEUED:
        job = job_transition(job=job, to=JobStatus.CANCELLED, cancel_requested_at=timezone.now())
        queueing.rq_discard(job.pk, job.queue)
        return job
    if job.status == JobStatus.IN_PROGRESS:
        queueing.cancel_flag_set(job.pk)
        job = job_transition(job=job, to=JobStatus.CANCELLED, cancel_requested_at=timezone.now())
        queueing.rq_stop(job.pk, job.queue)
        return job
    raise InvalidTransition(f"A {job.status} job cannot be cancelled.", code="not_cancellable")


def job_retry(*, job: Job) -> Job:
    """Queue a failed or cancelled job again, with a fresh budget of attempts. A job its kind
    says cannot run again (``retry_blocker``: e.g. its conversation was deleted) is a
    ``Conflict`` and stays as it is."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise InvalidTransition(f"A {job.status} job cannot be retried.", code="not_retryable")
    kind = registry.kind_of(job.kind)
    reason = kind.retry_blocker(job) if kind is not None and kind.retry_blocker else None
    if reason:
        raise Conflict(reason, code="not_retryable")
    with transaction.atomic():
        job = job_transition(
            job=job,
            to=JobStatus.QUEUED,
            max_attempts=job.attempts + settings.JOBS_MAX_ATTEMPTS,
            finished_at=None,
            cancel_requested_at=None,
            next_attempt_at=None,
        )
        queueing.cancel_flag_clear(job.pk)
        _enqueue_on_commit(job)
    return job


def retry_delay(*, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the server's Retry-After."""
    base = settings.JOBS_BACKOFF_BASE * 2 ** max(attempt - 1, 0)
    delay = min(settings.JOBS_BACKOFF_MAX, base) * random.uniform(0.8, 1.2)
    return max(delay, retry_after or 0)


def job_schedule_retry(*, job: Job, error: str, retry_after: float | None) -> Job:
    """After a transient failure: queue the job again after a backoff. When its attempts are
    used up, its kind's ``on_exhausted`` hook may name another way to try (then it is queued
    at once with fresh attempts); otherwise it fails for good."""
    if job.attempts >= job.max_attempts:
        requeued = _try_another_way(job, error)
        if requeued is not None:
            return requeued
        return job_transition(
            job=job,
            to=JobStatus.FAILED,
            last_error=f"{error} (gave up after {job.attempts} attempts)",
        )
    delay = retry_delay(attempt=job.attempts, retry_after=retry_after)
    with transaction.atomic():
        job = job_transition(
            job=job,
            to=JobStatus.QUEUED,
            last_error=error,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        )
        _enqueue_on_commit(job, delay=delay)
    return job


def _try_another_way(job: Job, error: str) -> Job | None:
    kind = registry.kind_of(job.kind)
    if kind is None or kind.on_exhausted is None:
        return None
    try:
        # One transaction: what the hook changed stands only if the job is queued again.
        with transaction.atomic():
            another_way = kind.on_exhausted(job)
            if another_way is None:
                return None
            job = job_transition(
                job=job,
                to=JobStatus.QUEUED,
                payload=job.payload,
                max_attempts=job.attempts + settings.JOBS_MAX_ATTEMPTS,
                last_error=f"{error} (attempts used up; {another_way})",
                next_attempt_at=None,
            )
            _enqueue_on_commit(job)
    except InvalidTransition:  # cancelled meanwhile
        raise
    except Exception:  # a broken hook must not keep the job from failing
        logger.exception("on_exhausted hook failed", extra={"job_id": str(job.pk)})
        return None
    return job


@dataclass
class ReconcileReport:
    requeued: list[str] = field(default_factory=list)  # queued jobs missing from Redis
    recovered: list[str] = field(default_factory=list)  # in-progress jobs whose worker died
    failed: list[str] = field(default_factory=list)  # ... and had no attempts left
    steps: dict[str, int] = field(default_factory=dict)  # registered steps: name -> fixed

    @property
    def changed(self) -> int:
        return (
            len(self.requeued) + len(self.recovered) + len(self.failed) + sum(self.steps.values())
        )


def jobs_reconcile(*, dry_run: bool = False) -> ReconcileReport:
    """Find jobs the queue lost and put them right; safe to run at any time, from anywhere.

    * ``queued`` jobs that RQ does not hold (Redis was down at enqueue, or was flushed) are
      enqueued again, keeping any retry delay still to run;
    * ``in_progress`` jobs whose heartbeat expired (worker killed, out of memory, machine
      lost) are queued for another attempt, or failed when none are left.

    A job is never left in progress for longer than JOBS_HEARTBEAT_TTL plus the reconcile
    interval (JOBS_RECONCILE_INTERVAL)."""
    report = ReconcileReport()
    now = timezone.now()
    grace = now - timedelta(seconds=settings.JOBS_ENQUEUE_GRACE)
    queued = Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=grace)
    for job in queued.iterator():
        if queueing.rq_is_pending(job.pk, job.queue):
            continue
        report.requeued.append(str(job.pk))
        if not dry_run:
            delay = (job.next_attempt_at - now).total_seconds() if job.next_attempt_at else 0
            if queueing.rq_enqueue(job.pk, job.queue, delay=max(delay, 0)):
                Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())

    stale_start = now - timedelta(seconds=settings.JOBS_HEARTBEAT_TTL)
    running = Job.objects.filter(status=JobStatus.IN_PROGRESS, started_at__lt=stale_start)
    for job in running.iterator():
        if queueing.heartbeat_alive(job.pk, job.queue):
            continue
        error = "The worker running this job stopped (killed or lost)."
        if job.attempts >= job.max_attempts:
            report.failed.append(str(job.pk))
            if not dry_run:
                _transition_quietly(job, JobStatus.FAILED, last_error=f"{error} No attempts left.")
            continue
        report.recovered.append(str(job.pk))
        if not dry_run:
            with transaction.atomic():
                if _transition_quietly(
                    job, JobStatus.QUEUED, last_error=error, next_attempt_at=None
                ):
                    _enqueue_on_commit(job)
    for name, step in registry.reconcile_steps().items():
        try:
            report.steps[name] = step(dry_run=dry_run)
        except Exception:  # one app's step failing must not stop job recovery
            logger.exception("Reconcile step failed", extra={"step": name})
    return report


def _transition_quietly(job: Job, to: str, **fields: Any) -> bool:
    try:
        job_transition(job=job, to=to, **fields)
    except InvalidTransition:  # it moved on by itself meanwhile
        return False
    return True
