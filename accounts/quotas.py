"""Monthly token budgets. ``accounts`` knows nothing of LLM usage, so the app that records
usage registers a counter here (``llm`` does, in its AppConfig.ready)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from accounts.models import User

UsageCounter = Callable[[User, datetime], int]
_usage_counter: UsageCounter | None = None


def register_usage_counter(counter: UsageCounter) -> None:
    """``counter(user, since)`` returns the tokens ``user`` has used since ``since``."""
    global _usage_counter
    _usage_counter = counter


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Budget:
    monthly_tokens: int | None
    used_this_month: int

    @property
    def remaining(self) -> int | None:
        if self.monthly_tokens is None:
            return None
        return max(self.monthly_tokens - self.used_this_month, 0)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0


def user_budget(*, user: User) -> Budget:
    """The user's budget for the current calendar month (UTC)."""
    used = _usage_counter(user, month_start()) if _usage_counter else 0
    return Budget(monthly_tokens=user.monthly_token_budget, used_this_month=used)
