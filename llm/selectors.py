"""Reads for the llm app: the catalog, conversations, messages, usage and the staff dashboard's
figures. Every usage total is built from ``USAGE_SUMS``, so all reports add up the same way."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import get_object_or_404

from accounts.models import ApiKey, User
from llm.catalog import model_is_callable, unavailable_reason
from llm.models import (
    ACTIVE_STATUSES,
    MESSAGE_SEARCH_VECTOR,
    SEARCH_CONFIG,
    Conversation,
    LLMModel,
    Message,
    MessageRole,
    MessageStatus,
    ModelFallback,
    ModelKind,
    Usage,
)
from project.errors import InvalidInput
from project.hotcache import HotCache, fresh

# The catalog per process (every call reads its entry); any save or delete of a model or a
# fallback invalidates it in every process at once (project.hotcache, llm.apps).
CATALOG = "catalog"
_models_by_slug: HotCache[LLMModel | None] = HotCache(CATALOG)
_fallback_ids: HotCache[tuple[int, ...]] = HotCache(CATALOG)


def model_by_slug(*, slug: str) -> LLMModel | None:
    """The catalog entry ``slug`` (enabled or not), from the per-process cache."""
    return fresh(_models_by_slug.get(slug, lambda: LLMModel.objects.filter(slug=slug).first()))


def model_list_available() -> list[LLMModel]:
    """Enabled models that can be called right now (their provider has a key or a stand-in)."""
    return [model for model in LLMModel.objects.filter(enabled=True) if model_is_callable(model)]


def model_find_available(*, slug: str) -> LLMModel | None:
    model = LLMModel.objects.filter(slug=slug, enabled=True).first()
    return model if model is not None and model_is_callable(model) else None


def model_check_callable(*, model: LLMModel) -> None:
    """Raise ``InvalidInput`` saying why ``model`` cannot be used now; return if it can."""
    if not model_is_callable(model):
        reason = unavailable_reason(model)
        raise InvalidInput(reason, code="model_unavailable", details={"model": [reason]})


def model_get_available(*, slug: str) -> LLMModel:
    """The model clients asked for, or ``InvalidInput`` that says why it cannot be used."""
    model = LLMModel.objects.filter(slug=slug).first()
    if model is None:
        raise InvalidInput(
            f"Unknown model '{slug}'. GET /api/v1/models/ lists the models you can use.",
            code="model_unknown",
            details={"model": [f"Unknown model '{slug}'."]},
        )
    model_check_callable(model=model)
    if model.kind != ModelKind.CHAT:
        message = f"'{slug}' is an embedding model; it cannot write replies."
        raise InvalidInput(message, code="model_not_chat", details={"model": [message]})
    return model


def model_fallback_ids(*, model_id: int) -> list[int]:
    """The ids of ``model_id``'s fallback models, in the order they are tried (cached)."""
    return list(
        _fallback_ids.get(
            model_id,
            lambda: tuple(
                ModelFallback.objects.filter(model_id=model_id)
                .order_by("position")
                .values_list("fallback_id", flat=True)
            ),
        )
    )


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


SNIPPET_MARK = "**"  # around matched words in search snippets (Markdown bold; never HTML)


def _search_query(q: str) -> SearchQuery:
    # websearch syntax: words, "quoted phrases", -excluded, or; never a syntax error.
    return SearchQuery(q, config=SEARCH_CONFIG, search_type="websearch")


class RankedConversations(Sequence):
    """Search results as the paginator wants them: their number, and a slice of them as
    conversations (one query per page). Holds only ids, best first."""

    def __init__(self, ids: list[UUID], best_messages: dict[UUID, UUID]) -> None:
        self.ids = ids
        self.best_messages = best_messages  # conversation id -> its best matching message

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        ids = self.ids[index]
        found = Conversation.objects.select_related("model").in_bulk(ids)
        page = [found[pk] for pk in ids if pk in found]
        for conversation in page:
            conversation.best_message_id = self.best_messages.get(conversation.pk)
        return page


def conversation_search(
    *, owner: User, q: str, archived: bool | None = None
) -> RankedConversations | QuerySet[Conversation]:
    """The owner's conversations whose title or any message matches ``q``, best first.

    PostgreSQL: full-text search (stemmed; the messages' GIN index), ranked by the best
    matching message, a title match weighted double, ties newest first. Two grouped queries
    over the matches only: a correlated rank per conversation would re-read every message of
    every matching conversation. Other databases: case-insensitive containment, newest
    first."""
    conversations = conversation_list(owner=owner, archived=archived)
    if connection.vendor != "postgresql":
        matching = Message.objects.filter(conversation__owner=owner, content__icontains=q).values(
            "conversation_id"
        )
        return conversations.filter(Q(title__icontains=q) | Q(pk__in=matching))
    query = _search_query(q)
    message_owner = {"conversation__owner": owner}
    if archived is not None:
        message_owner["conversation__archived"] = archived
    by_messages = (
        Message.objects.annotate(document=MESSAGE_SEARCH_VECTOR)
        .filter(document=query, **message_owner)
        .values("conversation_id")
        .annotate(
            rank=Max(SearchRank(F("document"), query)),
            updated=Max("conversation__updated_at"),
            # Best first: the snippet's message, found here rather than by a second search.
            message_ids=ArrayAgg("pk", order_by=(SearchRank(F("document"), query).desc(),)),
        )
        .values_list("conversation_id", "rank", "updated", "message_ids")
    )
    by_title = (
        conversations.annotate(document=SearchVector("title", config=SEARCH_CONFIG))
        .filter(document=query)
        .annotate(rank=SearchRank(F("document"), query))
        .values_list("pk", "rank", "updated_at")
    )
    scores: dict[UUID, list] = {}
    best_messages = {}
    for pk, rank, updated, message_ids in by_messages:
        scores[pk] = [rank, updated]
        best_messages[pk] = message_ids[0]
    for pk, rank, updated in by_title:
        scores.setdefault(pk, [0.0, updated])[0] += 2 * rank
    ordered = sorted(scores.items(), key=lambda item: (item[1][0], item[1][1]), reverse=True)
    return RankedConversations([pk for pk, _ in ordered], best_messages)


def _snippet_around(text: str, q: str, width: int = 80) -> str:
    at = text.lower().find(q.lower())
    start = max(0, at - width // 2)
    end = min(len(text), at + len(q) + width // 2)
    found = text[at : at + len(q)]
    snippet = f"{text[start:at]}{SNIPPET_MARK}{found}{SNIPPET_MARK}{text[at + len(q) : end]}"
    return ("…" if start else "") + snippet + ("…" if end < len(text) else "")


def conversation_search_matches(*, conversations: list[Conversation], q: str) -> None:
    """Give each of ``conversations`` (a page of ``conversation_search``) its best matching
    message as ``search_match = {"message_id", "snippet"}`` (None when only the title
    matched), the matched words marked with SNIPPET_MARK. One query for the whole page."""
    ids = [conversation.pk for conversation in conversations]
    best: dict = {}
    if connection.vendor == "postgresql":
        message_ids = [getattr(c, "best_message_id", None) for c in conversations]
        headlines = Message.objects.filter(pk__in=[pk for pk in message_ids if pk]).annotate(
            snippet=SearchHeadline(
                "content",
                _search_query(q),
                config=SEARCH_CONFIG,
                start_sel=SNIPPET_MARK,
                stop_sel=SNIPPET_MARK,
                max_words=24,
                min_words=8,
                max_fragments=1,
            )
        )
        for conversation_id, message_id, snippet in headlines.values_list(
            "conversation_id", "pk", "snippet"
        ):
            best[conversation_id] = {"message_id": message_id, "snippet": snippet}
    else:
        rows = (
            Message.objects.filter(conversation_id__in=ids, content__icontains=q)
            .order_by("conversation_id", "position")
            .values_list("conversation_id", "pk", "content")
        )
        for conversation_id, message_id, content in rows:
            best.setdefault(
                conversation_id,
                {"message_id": message_id, "snippet": _snippet_around(content, q)},
            )
    for conversation in conversations:
        conversation.search_match = best.get(conversation.pk)


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


class MessageTree:
    """The shape of a conversation's message tree (ids only), read in one query. Walking it in
    Python keeps every branch read at a fixed number of queries, and it stays small: a
    conversation holds at most LLM_MAX_MESSAGES_PER_CONVERSATION messages."""

    def __init__(self, rows: list[tuple[UUID, UUID | None]]) -> None:
        self.parents: dict[UUID, UUID | None] = {}
        self.children: dict[UUID | None, list[UUID]] = {}
        for message_id, parent_id in rows:  # in position order, so children are too
            self.parents[message_id] = parent_id
            self.children.setdefault(parent_id, []).append(message_id)

    def __contains__(self, message_id) -> bool:
        return message_id in self.parents

    def path_to(self, message_id: UUID | None) -> list[UUID]:
        """Ids from the root down to ``message_id`` (included); empty for None."""
        path = []
        while message_id is not None:
            path.append(message_id)
            message_id = self.parents[message_id]
        return path[::-1]

    def newest_leaf_under(self, message_id: UUID) -> UUID:
        """Follow the newest child down from ``message_id`` to a leaf."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def siblings(self, message_id: UUID) -> list[UUID]:
        """Messages with the same parent, this one included, oldest first."""
        return self.children[self.parents[message_id]]


def message_tree(*, conversation: Conversation) -> MessageTree:
    rows = conversation.messages.order_by("position").values_list("pk", "parent_id")
    return MessageTree(list(rows))


def _with_siblings(messages, tree: MessageTree) -> list[Message]:
    for message in messages:
        message.sibling_ids = tree.siblings(message.pk)
    return list(messages)


def _branch_messages(tree: MessageTree, leaf_id: UUID | None) -> list[Message]:
    path = tree.path_to(leaf_id)
    by_id = Message.objects.select_related("model").in_bulk(path)
    return _with_siblings([by_id[pk] for pk in path], tree)


def message_branch_leaf(*, conversation: Conversation, tree: MessageTree, message_id) -> UUID:
    """The leaf a branch choice means: ``message_id`` (a message of this conversation, else
    ``InvalidInput``), followed down its newest replies, so choosing a sibling shows its
    latest continuation."""
    try:
        message_id = UUID(str(message_id))
    except ValueError:
        message_id = None
    if message_id not in tree:
        raise InvalidInput(
            "Not a message of this conversation.",
            code="unknown_message",
            details={"current_leaf": ["Not a message of this conversation."]},
        )
    return tree.newest_leaf_under(message_id)


def message_branch(*, conversation: Conversation, leaf_id=None) -> list[Message]:
    """The messages from the root to ``leaf_id`` (default: the conversation's current leaf),
    each with ``sibling_ids``. Three queries whatever the length."""
    tree = message_tree(conversation=conversation)
    if leaf_id is None:
        leaf = conversation.current_leaf_id
    else:
        leaf = message_branch_leaf(conversation=conversation, tree=tree, message_id=leaf_id)
    return _branch_messages(tree, leaf)


def messages_with_siblings(*, conversation: Conversation, messages: list[Message]) -> None:
    """Give ``messages`` (of ``conversation``) their ``sibling_ids``, in one query."""
    _with_siblings(messages, message_tree(conversation=conversation))


def message_path(*, message: Message) -> list[Message]:
    """The messages from the root to ``message`` (included): a reply's context."""
    return _branch_messages(message_tree(conversation=message.conversation), message.pk)


def message_list_all(*, conversation: Conversation) -> list[Message]:
    """Every message of every branch in position order, each with ``sibling_ids``."""
    tree = message_tree(conversation=conversation)
    return _with_siblings(message_list(conversation=conversation), tree)


@dataclass(frozen=True, slots=True)
class UsageReport:
    user: int | None
    since: date
    until: date
    total: dict
    by_day: list[dict]
    by_model: list[dict]
    by_api_key: list[dict]
    by_team: list[dict]
    by_user: list[dict]
    team: int | None = None


USAGE_SUMS = {
    "input_tokens": Coalesce(Sum("input_tokens"), 0),
    "output_tokens": Coalesce(Sum("output_tokens"), 0),
    "cache_read_tokens": Coalesce(Sum("cache_read_tokens"), 0),
    "cache_write_tokens": Coalesce(Sum("cache_write_tokens"), 0),
    # Integer micro-dollars: exact sums on every database.
    "cost_micros": Coalesce(Sum("cost_micros"), 0),
    "requests": Count("id"),
}


def _usage_between(since: date, until: date) -> QuerySet[Usage]:
    """Usage rows of the UTC days ``since`` to ``until`` (both included), as an index-friendly
    range on ``created_at``."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    return Usage.objects.filter(created_at__gte=start, created_at__lt=end)


def usage_report(
    *, user_id: int | None = None, team_id: int | None = None, since: date, until: date
) -> UsageReport:
    """Tokens, cost and requests between two UTC dates (both included) of one user (all their
    calls, whatever team) or of one team (every member's calls charged to it), by day, model,
    API key, team and user. Counts completed replies, including those whose conversations
    were since purged. Six queries."""
    rows = _usage_between(since, until)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    by_day = (
        rows.annotate(date=TruncDate("created_at", tzinfo=UTC))
        .values("date")
        .annotate(**USAGE_SUMS)
    )
    by_model = rows.values(model_slug=F("model__slug")).annotate(**USAGE_SUMS)
    by_key = rows.values(
        "api_key_id", api_key_name=F("api_key__name"), api_key_prefix=F("api_key__prefix")
    ).annotate(**USAGE_SUMS)
    by_team = rows.values("team_id", team_slug=F("team__slug"), team_name=F("team__name")).annotate(
        **USAGE_SUMS
    )
    by_user = rows.values("user_id", email=F("user__email")).annotate(**USAGE_SUMS)
    return UsageReport(
        user=user_id,
        team=team_id,
        since=since,
        until=until,
        total=rows.aggregate(**USAGE_SUMS),
        by_day=list(by_day.order_by("date")),
        by_model=[
            {"model": row.pop("model_slug"), **row} for row in by_model.order_by("model_slug")
        ],
        by_api_key=[
            {"api_key": row.pop("api_key_id"), **row}
            for row in by_key.order_by(F("api_key_id").asc(nulls_first=True))
        ],
        by_team=[
            {"team": row.pop("team_id"), **row}
            for row in by_team.order_by(F("team_id").asc(nulls_first=True))
        ],
        by_user=[{"user": row.pop("user_id"), **row} for row in by_user.order_by("email")],
    )


def usage_totals(*, since: date, until: date, group_by: str) -> list[dict]:
    """Everyone's usage between two UTC dates grouped by ``user`` (email), ``model`` (slug),
    ``day``, ``api_key`` (``<prefix> (<name>)``, "-" for JWT requests) or ``team`` (slug, "-"
    for calls charged to no team), for operators' reports; cost in micro-dollars
    (``cost_micros``)."""
    rows = _usage_between(since, until)
    group = {
        "user": F("user__email"),
        "model": F("model__slug"),
        "day": TruncDate("created_at", tzinfo=UTC),
        "api_key": F("api_key_id"),
        "team": F("team__slug"),
    }[group_by]
    grouped = list(rows.values(group_key=group).annotate(**USAGE_SUMS).order_by("group_key"))
    if group_by == "api_key":
        keys = ApiKey.objects.in_bulk([row["group_key"] for row in grouped if row["group_key"]])
        for row in grouped:
            key = keys.get(row["group_key"])
            row["group_key"] = f"{key.prefix} ({key.name})" if key else "-"
    if group_by == "team":
        for row in grouped:
            row["group_key"] = row["group_key"] or "-"
    return [{group_by: row.pop("group_key"), **row} for row in grouped]


def conversations_purgeable(
    *, updated_before: datetime, owner: User | None = None, archived_only: bool = False
) -> QuerySet[Conversation]:
    """Conversations old enough to purge, never one with a reply still being written."""
    conversations = Conversation.objects.filter(updated_at__lt=updated_before).exclude(
        messages__status__in=ACTIVE_STATUSES
    )
    if owner is not None:
        conversations = conversations.filter(owner=owner)
    if archived_only:
        conversations = conversations.filter(archived=True)
    return conversations.order_by("pk")


# The staff dashboard's figures: each one query, whatever the data size.

LATENCY_SAMPLE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    tokens: int
    cost_micros: int


def usage_by_day(*, days: int, today: date) -> list[DayUsage]:
    """Tokens and cost for each of the last ``days`` UTC days, zero for days without usage."""
    first = today - timedelta(days=days - 1)
    rows = (
        _usage_between(first, today)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**USAGE_SUMS)
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day)
        tokens = row["input_tokens"] + row["output_tokens"] if row else 0
        result.append(DayUsage(day, tokens, row["cost_micros"] if row else 0))
    return result


def usage_top_spenders(*, since: datetime, limit: int = 10) -> list[dict]:
    """The users who spent most since ``since``: email, tokens, cost_micros, requests."""
    rows = (
        Usage.objects.filter(created_at__gte=since)
        .values(email=F("user__email"))
        .annotate(**USAGE_SUMS)
        .order_by("-cost_micros", "email")[:limit]
    )
    return [
        {
            "email": row["email"],
            "tokens": row["input_tokens"] + row["output_tokens"],
            "cost_micros": row["cost_micros"],
            "requests": row["requests"],
        }
        for row in rows
    ]


def usage_by_team(*, since: datetime) -> list[dict]:
    """Spend per team since ``since`` (calls charged to no team in one "-" row), most first:
    team slug and name, tokens, cost_micros, requests. One query."""
    rows = (
        Usage.objects.filter(created_at__gte=since)
        .values(slug=F("team__slug"), name=F("team__name"))
        .annotate(**USAGE_SUMS)
        .order_by("-cost_micros", "slug")
    )
    return [
        {
            "slug": row["slug"] or "-",
            "name": row["name"] or "(no team)",
            "tokens": row["input_tokens"] + row["output_tokens"],
            "cost_micros": row["cost_micros"],
            "requests": row["requests"],
        }
        for row in rows
    ]


def _nearest_rank(ordered: list[int], percent: int) -> int:
    """Nearest-rank percentile of a sorted, non-empty list (integer arithmetic)."""
    rank = max(1, -(-len(ordered) * percent // 100))  # ceil(n * percent / 100)
    return ordered[rank - 1]


def reply_latency_by_model(*, since: datetime) -> list[dict]:
    """p50/p95 latency (nearest rank) per model of completed replies since ``since``, from
    the newest LATENCY_SAMPLE_LIMIT replies (bounded memory, one query, any database)."""
    rows = (
        Message.objects.filter(
            role=MessageRole.ASSISTANT,
            status=MessageStatus.COMPLETED,
            completed_at__gte=since,
            latency_ms__isnull=False,
        )
        .order_by("-completed_at")
        .values_list("model__slug", "latency_ms")[:LATENCY_SAMPLE_LIMIT]
    )
    samples: dict[str, list[int]] = {}
    for slug, latency in rows:
        samples.setdefault(slug or "?", []).append(latency)
    result = []
    for slug, values in sorted(samples.items()):
        values.sort()
        result.append(
            {
                "model": slug,
                "count": len(values),
                "p50": _nearest_rank(values, 50),
                "p95": _nearest_rank(values, 95),
            }
        )
    return result
