"""Monthly token budgets. ``accounts`` knows nothing of LLM usage, so the app that records
usage registers a counter here (``llm`` does, in its AppConfig.ready)."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

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


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one spend budget stands in its current period. ``accounts`` defines the shape
    and shows it (``auth/me/``, API keys); the ``budgets`` app registers the reader that
    fills it, so accounts never imports budgets."""

    id: int
    scope: str  # "user" or "api_key"
    period: str  # "daily", "monthly" or "lifetime"
    limit_usd: Decimal | None
    limit_tokens: int | None
    spent_usd: Decimal
    reserved_usd: Decimal
    remaining_usd: Decimal | None
    spent_tokens: int
    reserved_tokens: int
    remaining_tokens: int | None
    resets_at: datetime | None


BudgetReader = Callable[..., dict[int | None, list[BudgetStatus]]]
_budget_reader: BudgetReader | None = None


def register_budget_reader(reader: BudgetReader) -> None:
    """``reader(user=, api_key_ids=)`` returns the user's budgets under ``None`` and each
    key's budgets under its id."""
    global _budget_reader
    _budget_reader = reader


def budgets_of(
    *, user: User, api_key_ids: Iterable[int] = ()
) -> dict[int | None, list[BudgetStatus]]:
    api_key_ids = list(api_key_ids)
    if _budget_reader is None:
        return {None: [], **{key_id: [] for key_id in api_key_ids}}
    return _budget_reader(user=user, api_key_ids=api_key_ids)
