"""Budget periods in UTC: when the current one started and when it resets."""

from datetime import UTC, datetime, timedelta

from django.db import models
from django.utils import timezone


class BudgetPeriod(models.TextChoices):
    DAILY = "daily", "Daily (resets at 00:00 UTC)"
    MONTHLY = "monthly", "Monthly (resets on the 1st, 00:00 UTC)"
    LIFETIME = "lifetime", "None (lifetime, never resets)"


# Every lifetime budget's single ledger row is keyed by this instant.
LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_start(period: str, now: datetime | None = None) -> datetime:
    """The first instant of the period that contains ``now``."""
    now = (now or timezone.now()).astimezone(UTC)
    if period == BudgetPeriod.DAILY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.MONTHLY:
        return month_start(now)
    return LIFETIME_START


def period_end(period: str, start: datetime) -> datetime | None:
    """When the period that began at ``start`` resets; None for a lifetime budget."""
    if period == BudgetPeriod.DAILY:
        return start + timedelta(days=1)
    if period == BudgetPeriod.MONTHLY:
        return (start + timedelta(days=32)).replace(day=1)
    return None
