"""The one place a ``/v1/`` call is admitted and, when it ends, settled: the same limits as a
conversation reply (the user's monthly token budget today; spend budgets, rate limits and
model access from the ``budgets`` app plug in here and nowhere else).

Refusals are domain errors (``project.errors``); the gateway renders them in the client's
API shape (a budget or rate limit is a 429, model access a 403)."""

from dataclasses import dataclass
from decimal import Decimal

from accounts.models import ApiKey, User
from accounts.quotas import user_budget
from llm.models import LLMModel
from project.errors import BudgetExceeded


@dataclass(slots=True)
class Admission:
    """What admitting a call holds until it is settled."""

    user: User
    api_key: ApiKey | None
    model: LLMModel


def call_admit(
    *,
    user: User,
    api_key: ApiKey | None,
    model: LLMModel,
    prompt_tokens: int,
    max_tokens: int,
    reference: str,
) -> Admission:
    """Admit a call whose worst case is ``prompt_tokens`` in and ``max_tokens`` out, or raise
    the domain error that refuses it (nothing held then)."""
    if user_budget(user=user).exhausted:
        raise BudgetExceeded("Your monthly token budget is used up.", code="budget_exhausted")
    return Admission(user=user, api_key=api_key, model=model)


def call_settle(*, admission: Admission, cost: Decimal, tokens: int) -> None:
    """Count what the call really used. Safe to call once per admission."""


def call_release(*, admission: Admission) -> None:
    """Give back what the call held: it produced nothing."""
