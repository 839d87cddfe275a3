"""Spend budgets as accounts shows them (``auth/me/``, API keys). ``accounts`` knows nothing of
budgets or usage: it defines the shape and a reader registry, and the ``budgets`` app
registers the reader in its AppConfig.ready (the same inversion ``jobs`` uses for handlers)."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from accounts.models import User


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one spend budget stands in its current period. ``accounts`` defines the shape
    and shows it (``auth/me/``, API keys); the ``budgets`` app registers the reader that
    fills it, so accounts never imports budgets."""

    id: int
    scope: str  # "user" or "api_key"
    period: str  # "daily", "monthly" or "lifetime"
    limit_micros: int | None  # money in micro-dollars (project.money)
    limit_tokens: int | None
    spent_micros: int
    reserved_micros: int
    remaining_micros: int | None
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
