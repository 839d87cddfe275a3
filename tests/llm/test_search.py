"""Searching conversations with ?q=: by title and by what was said, best match first, with a
snippet of the matching message, never someone else's conversation, at a fixed query cost.
Full-text behaviour (stemming, ranking) is asserted on PostgreSQL; the rest on any database."""

import pytest
from django.db import connection

from llm.models import Message
from tests.llm.factories import ConversationFactory
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db

BASE = "/api/v1/conversations/"
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="full-text search is PostgreSQL's"
)


def conversation_with(owner, *texts, title=""):
    conversation = ConversationFactory(owner=owner, title=title)
    previous = None
    for position, text in enumerate(texts, start=1):
        previous = Message.objects.create(
            conversation=conversation,
            position=position,
            parent=previous,
            role="user" if position % 2 else "assistant",
            content=text,
        )
    conversation.current_leaf = previous
    conversation.save()
    return conversation


def search(client, q, **params) -> list[dict]:
    response = client.get(BASE, {"q": q, **params})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_finds_by_message_text_with_a_snippet(auth_client, user):
    wanted = conversation_with(
        user,
        "How long should I boil an egg?",
        "Boil it for seven minutes, then put the egg in cold water.",
        "And a risotto?",
        title="Cooking",
    )
    conversation_with(user, "What is the capital of Norway?", "Oslo.", title="Geography")
    results = search(auth_client, "risotto")
    assert [r["id"] for r in results] == [str(wanted.pk)]
    match = results[0]["match"]
    assert match["message_id"] == str(wanted.messages.get(position=3).pk)
    assert "**risotto**" in match["snippet"]
    # Outside a search there is no match field value.
    assert auth_client.get(BASE).json()["results"][0]["match"] is None


def test_title_matches_too(auth_client, user):
    titled = conversation_with(user, "hello", title="Quarterly planning")
    results = search(auth_client, "quarterly")
    assert [r["id"] for r in results] == [str(titled.pk)]
    assert results[0]["match"] is None  # only the title matched


def test_never_another_users_conversation(auth_client, user, other_user):
    conversation_with(other_user, "The secret launch code is swordfish", title="swordfish")
    mine = conversation_with(user, "A fish called swordfish")
    assert [r["id"] for r in search(auth_client, "swordfish")] == [str(mine.pk)]
    assert search(auth_client, "launch code") == []


def test_archived_filter_applies_to_search(auth_client, user):
    archived = conversation_with(user, "old notes about budgets")
    archived.archived = True
    archived.save()
    active = conversation_with(user, "new notes about budgets")
    assert [r["id"] for r in search(auth_client, "budgets", archived="false")] == [str(active.pk)]
    assert len(search(auth_client, "budgets")) == 2


@on_postgresql
def test_full_text_is_stemmed_and_ranked(auth_client, user):
    once = conversation_with(user, "We talked about gardens and a little about running.")
    often = conversation_with(
        user, "Running plans", "running shoes for a runner who runs", "more running"
    )
    results = search(auth_client, "run")  # stemmed: runs, running
    assert [r["id"] for r in results] == [str(often.pk), str(once.pk)]
    assert "**running**" in results[1]["match"]["snippet"].lower()
    # websearch syntax: an excluded word, a quoted phrase; never a syntax error.
    assert [r["id"] for r in search(auth_client, "run -gardens")] == [str(often.pk)]
    assert [r["id"] for r in search(auth_client, '"running shoes"')] == [str(often.pk)]
    assert search(auth_client, '"unbalanced & | !') == []


def test_query_count_does_not_grow_with_results(auth_client, user):
    for n in range(2):
        conversation_with(user, f"apples number {n}", "apples again")
    few = queries_for_get(auth_client, BASE + "?q=apples")
    for n in range(8):
        conversation_with(user, f"apples number {n + 2}", "more apples", "and apples")
    assert len(search(auth_client, "apples")) == 10
    assert queries_for_get(auth_client, BASE + "?q=apples") == few
