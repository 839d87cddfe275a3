"""Reads for jobs."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet

from jobs.models import Job, JobStatus


def job_list(*, user, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    """The user's jobs, newest first; staff see everyone's."""
    jobs = Job.objects.all() if user.is_staff else Job.objects.filter(owner=user)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str
    queued: int
    running: int
    oldest_queued_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_queued_at is None:
            return None
        return (now - self.oldest_queued_at).total_seconds()


def queue_depths() -> list[QueueDepth]:
    """Per queue, jobs waiting and running and when the oldest waiting one was created: one
    query, from the database (the source of truth, whatever Redis holds)."""
    rows = (
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.IN_PROGRESS])
        .values("queue")
        .annotate(
            queued=Count("pk", filter=Q(status=JobStatus.QUEUED)),
            running=Count("pk", filter=Q(status=JobStatus.IN_PROGRESS)),
            oldest=Min("created_at", filter=Q(status=JobStatus.QUEUED)),
        )
        .order_by("queue")
    )
    return [QueueDepth(r["queue"], r["queued"], r["running"], r["oldest"]) for r in rows]


def job_counts_by_status(*, since: datetime) -> list[dict]:
    """Jobs per status, over all time and since ``since`` (one query)."""
    totals = Job.objects.aggregate(
        **{f"all_{s}": Count("pk", filter=Q(status=s)) for s in JobStatus.values},
        **{
            f"recent_{s}": Count("pk", filter=Q(status=s, created_at__gte=since))
            for s in JobStatus.values
        },
    )
    return [
        {"status": s, "all": totals[f"all_{s}"], "recent": totals[f"recent_{s}"]}
        for s in JobStatus.values
    ]
