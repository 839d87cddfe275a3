"""Reads for jobs."""

from django.db.models import QuerySet

from jobs.models import Job


def job_list(*, user, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    """The user's jobs, newest first; staff see everyone's."""
    jobs = Job.objects.all() if user.is_staff else Job.objects.filter(owner=user)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")
