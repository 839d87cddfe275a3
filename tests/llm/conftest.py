"""Conversation set-up shared by the reply, title and lifecycle tests: a chat model and a
title model (LLM_TITLE_MODEL) on the stand-in, and the two API calls that start a
conversation and post to it."""

from decimal import Decimal

import pytest

from tests.llm.factories import StandinModelFactory

CONVERSATIONS = "/api/v1/conversations/"
QUESTION = "How do I bake sourdough bread at home?"


@pytest.fixture
def chat_model(standin):
    return StandinModelFactory(slug="chat-standin")


@pytest.fixture
def title_model(settings, standin):
    """A cheaper model, named in LLM_TITLE_MODEL so that titles are on."""
    model = StandinModelFactory(
        slug="title-standin",
        provider="anthropic",
        input_price_per_mtok=Decimal("0.25"),
        output_price_per_mtok=Decimal("1.25"),
    )
    settings.LLM_TITLE_MODEL = model.slug
    return model


def conversation_start(client, model, **body) -> str:
    """Start a conversation with ``model`` (``body``: title, params...); its id."""
    response = client.post(CONVERSATIONS, {"model": model.slug, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def message_post(client, conversation: str, content: str = QUESTION):
    """Post a user message; the response as it is (202, or a refusal)."""
    return client.post(
        f"{CONVERSATIONS}{conversation}/messages/", {"content": content}, format="json"
    )


def message_send(client, conversation: str, content: str = QUESTION) -> dict:
    """Post a user message that must be accepted; the accepted body (its job and reply)."""
    response = message_post(client, conversation, content)
    assert response.status_code == 202, response.content
    return response.json()
