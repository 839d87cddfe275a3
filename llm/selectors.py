"""Reads for the llm app: the catalog, conversations, messages and usage."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from django.db.models import Count, DecimalField, F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import get_object_or_404

from accounts.models import User
from llm.catalog import provider_target, unavailable_reason
from llm.models import Conversation, LLMModel, Message, Usage
from llm.providers.pricing import COST_QUANTUM
from project.errors import InvalidInput


def model_list_available() -> list[LLMModel]:
    """Enabled models that can be called right now (their provider has a key or a stand-in)."""
    return [model for model in LLMModel.objects.filter(enabled=True) if provider_target(model)]


def model_find_available(*, slug: str) -> LLMModel | None:
    model = LLMModel.objects.filter(slug=slug, enabled=True).first()
    return model if model is not None and provider_target(model) else None


def model_get_available(*, slug: str) -> LLMModel:
    """The model clients asked for, or a 400 that says why it cannot be used."""
    model = LLMModel.objects.filter(slug=slug).first()
    if model is None:
        raise InvalidInput(
            f"Unknown model '{slug}'. GET /api/v1/models/ lists the models you can use.",
            code="model_unknown",
            details={"model": [f"Unknown model '{slug}'."]},
        )
    if not model.enabled or provider_target(model) is None:
        reason = unavailable_reason(model)
        raise InvalidInput(reason, code="model_unavailable", details={"model": [reason]})
    return model


def model_catalog() -> QuerySet[LLMModel]:
    return LLMModel.objects.all()


def conversation_list(
    *, owner: User, search: str | None = None, archived: bool | None = None
) -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(owner=owner).select_related("model")
    if search:
        conversations = conversations.filter(title__icontains=search)
    if archived is not None:
        conversations = conversations.filter(archived=archived)
    return conversations


def conversation_get(*, owner: User, conversation_id: UUID | str) -> Conversation:
    """The owner's conversation; anyone else's (or none) is a 404."""
    return get_object_or_404(conversation_list(owner=owner), pk=conversation_id)


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.select_related("model").order_by("position")


def message_get(*, owner: User, conversation_id: UUID | str, message_id: UUID | str) -> Message:
    return get_object_or_404(
        Message.objects.select_related("model", "conversation"),
        pk=message_id,
        conversation_id=conversation_id,
        conversation__owner=owner,
    )


@dataclass(frozen=True, slots=True)
class UsageReport:
    user: int
    since: date
    until: date
    total: dict
    by_day: list[dict]
    by_model: list[dict]


_USAGE_SUMS = {
    "input_tokens": Coalesce(Sum("input_tokens"), 0),
    "output_tokens": Coalesce(Sum("output_tokens"), 0),
    "cost": Coalesce(
        Sum("cost"), Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=6)
    ),
    "requests": Count("id"),
}


def usage_report(*, user_id: int, since: date, until: date) -> UsageReport:
    """Tokens, cost and requests between two UTC dates (both included), by day and by model.
    Counts completed replies, including those whose conversations were since purged."""
    rows = Usage.objects.filter(
        user_id=user_id, created_at__date__gte=since, created_at__date__lte=until
    )
    by_day = (
        rows.annotate(date=TruncDate("created_at", tzinfo=UTC))
        .values("date")
        .annotate(**_USAGE_SUMS)
    )
    by_model = rows.values(model_slug=F("model__slug")).annotate(**_USAGE_SUMS)
    return UsageReport(
        user=user_id,
        since=since,
        until=until,
        total=rows.aggregate(**_USAGE_SUMS),
        by_day=list(by_day.order_by("date")),
        by_model=[
            {"model": row.pop("model_slug"), **row} for row in by_model.order_by("model_slug")
        ],
    )


def usage_tokens_since(user: User, since: datetime) -> int:
    """Input + output tokens ``user`` has used since ``since`` (the accounts quota counter)."""
    totals = Usage.objects.filter(user=user, created_at__gte=since).aggregate(
        tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0)
    )
    return totals["tokens"]


def usage_totals(*, since: date, until: date, group_by: str) -> list[dict]:
    """Everyone's usage between two UTC dates grouped by ``user`` (email), ``model`` (slug) or
    ``day``, for operators' reports; cost stays Decimal."""
    rows = Usage.objects.filter(created_at__date__gte=since, created_at__date__lte=until)
    group = {
        "user": F("user__email"),
        "model": F("model__slug"),
        "day": TruncDate("created_at", tzinfo=UTC),
    }[group_by]
    grouped = rows.values(group_key=group).annotate(**_USAGE_SUMS).order_by("group_key")
    # SQLite sums decimals as floats; quantise back to the stored precision.
    return [
        {group_by: row.pop("group_key"), **row, "cost": Decimal(row["cost"]).quantize(COST_QUANTUM)}
        for row in grouped
    ]
