"""The message tree as a client sees it: regenerate and edit make siblings, the current branch
is what GET messages/ lists, PATCH current_leaf switches branch, and a reply's prompt is its
own branch only (asserted on what the stand-in provider received). Real workers, real SDKs."""

import pytest

from jobs.models import Job
from llm.models import Message, Usage
from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/conversations"


@pytest.fixture
def conversation(auth_client, standin) -> str:
    model = StandinModelFactory(slug="tree-model")
    response = auth_client.post(f"{BASE}/", {"model": model.slug}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def send(client, conversation, content, **headers) -> dict:
    response = client.post(
        f"{BASE}/{conversation}/messages/", {"content": content}, format="json", **headers
    )
    assert response.status_code == 202, response.content
    return response.json()


def regenerate(client, conversation, reply_id, body=None, **headers):
    return client.post(
        f"{BASE}/{conversation}/messages/{reply_id}/regenerate/",
        body or {},
        format="json",
        **headers,
    )


def edit(client, conversation, message_id, content, **headers):
    return client.post(
        f"{BASE}/{conversation}/messages/{message_id}/edit/",
        {"content": content},
        format="json",
        **headers,
    )


def branch(client, conversation, query="") -> list[dict]:
    response = client.get(f"{BASE}/{conversation}/messages/{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def contents(messages) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


def last_prompt(standin) -> list[tuple[str, str]]:
    """The chat messages of the last completion the stand-in received."""
    body = [r for r in standin.received if r.path.endswith("/chat/completions")][-1].body
    return [(m["role"], m["content"]) for m in body["messages"]]


def reply_to(text: str) -> str:
    return f'You said: "{text}"'


def test_regenerate_adds_a_sibling_reply_with_the_same_context(auth_client, conversation, standin):
    first = send(auth_client, conversation, "What is a tree?")
    work_until_idle()
    old_reply = first["assistant_message"]["id"]

    response = regenerate(auth_client, conversation, old_reply)
    assert response.status_code == 202, response.content
    posted = response.json()
    new_reply = posted["assistant_message"]
    assert posted["user_message"]["id"] == first["user_message"]["id"]
    assert new_reply["parent"] == first["user_message"]["id"]
    assert new_reply["sibling_ids"] == [old_reply, new_reply["id"]]
    work_until_idle()

    assert last_prompt(standin) == [("user", "What is a tree?")]
    current = branch(auth_client, conversation)
    assert [m["id"] for m in current] == [first["user_message"]["id"], new_reply["id"]]
    assert current[1]["status"] == "completed"
    assert current[1]["sibling_ids"] == [old_reply, new_reply["id"]]
    # The old reply is kept: the whole tree has both, each with its parent.
    tree = branch(auth_client, conversation, "?all=true")
    assert [(m["id"], m["parent"]) for m in tree] == [
        (first["user_message"]["id"], None),
        (old_reply, first["user_message"]["id"]),
        (new_reply["id"], first["user_message"]["id"]),
    ]
    # Both replies were counted, each once.
    assert Usage.objects.count() == 2


def test_regenerate_with_another_model_and_params(auth_client, conversation, standin):
    other = StandinModelFactory(slug="tree-other", provider="anthropic")
    first = send(auth_client, conversation, "Once more")
    work_until_idle()
    response = regenerate(
        auth_client,
        conversation,
        first["assistant_message"]["id"],
        {"model": other.slug, "params": {"max_tokens": 7, "temperature": 0.5}},
    )
    assert response.status_code == 202, response.content
    work_until_idle()
    request = standin.last_request
    assert request.path.endswith("/messages")  # the anthropic wire format
    assert request.body["max_tokens"] == 7 and request.body["temperature"] == 0.5
    reply = auth_client.get(
        f"{BASE}/{conversation}/messages/{response.json()['assistant_message']['id']}/"
    ).json()
    assert reply["model"] == other.slug and reply["output_tokens"] == 7
    # The conversation itself keeps its model.
    assert auth_client.get(f"{BASE}/{conversation}/").json()["model"] == "tree-model"


def test_edit_branches_and_the_prompt_is_the_edited_branch_only(auth_client, conversation, standin):
    first = send(auth_client, conversation, "Tell me about cats")
    work_until_idle()
    second = send(auth_client, conversation, "And their whiskers?")
    work_until_idle()
    assert last_prompt(standin) == [
        ("user", "Tell me about cats"),
        ("assistant", Message.objects.get(pk=first["assistant_message"]["id"]).content),
        ("user", "And their whiskers?"),
    ]

    response = edit(auth_client, conversation, second["user_message"]["id"], "And their tails?")
    assert response.status_code == 202, response.content
    edited = response.json()
    assert edited["user_message"]["parent"] == first["assistant_message"]["id"]
    assert edited["user_message"]["sibling_ids"] == [
        second["user_message"]["id"],
        edited["user_message"]["id"],
    ]
    work_until_idle()
    # The edited question replaced the original one in the prompt; the original is absent.
    first_reply = Message.objects.get(pk=first["assistant_message"]["id"]).content
    assert last_prompt(standin) == [
        ("user", "Tell me about cats"),
        ("assistant", first_reply),
        ("user", "And their tails?"),
    ]
    current = branch(auth_client, conversation)
    assert contents(current)[2:] == [
        ("user", "And their tails?"),
        ("assistant", Message.objects.get(pk=edited["assistant_message"]["id"]).content),
    ]
    assert (
        auth_client.get(f"{BASE}/{conversation}/").json()["current_leaf"]
        == (edited["assistant_message"]["id"])
    )

    # Editing the very first message makes a second root, with a prompt of its own.
    response = edit(auth_client, conversation, first["user_message"]["id"], "Tell me about dogs")
    assert response.status_code == 202, response.content
    work_until_idle()
    assert last_prompt(standin) == [("user", "Tell me about dogs")]
    assert branch(auth_client, conversation)[0]["content"] == "Tell me about dogs"


def test_switching_branch_then_posting_continues_that_branch(auth_client, conversation, standin):
    first = send(auth_client, conversation, "Plan a trip")
    work_until_idle()
    second = send(auth_client, conversation, "To Rome")
    work_until_idle()
    edited = edit(auth_client, conversation, second["user_message"]["id"], "To Oslo").json()
    work_until_idle()

    # Choosing the original question (a sibling) shows its newest continuation.
    response = auth_client.patch(
        f"{BASE}/{conversation}/",
        {"current_leaf": second["user_message"]["id"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["current_leaf"] == second["assistant_message"]["id"]
    assert [m["content"] for m in branch(auth_client, conversation) if m["role"] == "user"] == [
        "Plan a trip",
        "To Rome",
    ]
    # Another branch can be read without switching.
    other = branch(auth_client, conversation, f"?branch={edited['assistant_message']['id']}")
    assert [m["content"] for m in other if m["role"] == "user"] == ["Plan a trip", "To Oslo"]

    # A new message follows the current leaf, and its prompt never holds the other branch.
    posted = send(auth_client, conversation, "By train")
    assert posted["user_message"]["parent"] == second["assistant_message"]["id"]
    work_until_idle()
    prompt = last_prompt(standin)
    assert [text for role, text in prompt if role == "user"] == [
        "Plan a trip",
        "To Rome",
        "By train",
    ]
    assert not any("Oslo" in text for _, text in prompt)
    assert len(branch(auth_client, conversation)) == 6
    assert first["user_message"]["id"] == branch(auth_client, conversation)[0]["id"]


def test_branch_choices_must_be_messages_of_the_conversation(
    auth_client, other_client, conversation, standin
):
    send(auth_client, conversation, "Hello")
    work_until_idle()
    elsewhere = other_client.post(f"{BASE}/", {"model": "tree-model"}, format="json").json()["id"]
    foreign = send(other_client, elsewhere, "Not yours")["user_message"]["id"]
    work_until_idle()
    for leaf in (foreign, "6f1d2c3b-0000-4000-8000-000000000000"):
        response = auth_client.patch(
            f"{BASE}/{conversation}/", {"current_leaf": leaf}, format="json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["details"]["current_leaf"]
        assert auth_client.get(f"{BASE}/{conversation}/messages/?branch={leaf}").status_code == 400
    bad = auth_client.get(f"{BASE}/{conversation}/messages/?branch=nope")
    assert bad.status_code == 400 and "branch" in bad.json()["error"]["details"]


def test_another_users_message_is_404(auth_client, other_client, conversation, standin):
    posted = send(auth_client, conversation, "Mine")
    work_until_idle()
    reply, question = posted["assistant_message"]["id"], posted["user_message"]["id"]
    assert regenerate(other_client, conversation, reply).status_code == 404
    assert edit(other_client, conversation, question, "Hijack").status_code == 404
    # Their own conversation id with my message id is a 404 too.
    theirs = other_client.post(f"{BASE}/", {"model": "tree-model"}, format="json").json()["id"]
    assert regenerate(other_client, theirs, reply).status_code == 404
    assert edit(other_client, theirs, question, "Hijack").status_code == 404
    assert Message.objects.count() == 2


def test_one_reply_in_flight_per_conversation(auth_client, conversation, standin):
    posted = send(auth_client, conversation, "First")
    # The reply is still queued: regenerating or editing now is refused, nothing stored.
    response = regenerate(auth_client, conversation, posted["assistant_message"]["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reply_in_progress"
    response = edit(auth_client, conversation, posted["user_message"]["id"], "Second thoughts")
    assert response.status_code == 409
    assert Message.objects.count() == 2 and Job.objects.count() == 1
    work_until_idle()
    assert regenerate(auth_client, conversation, posted["assistant_message"]["id"]).status_code == (
        202
    )
    # ... and the regenerated reply in flight blocks a plain post too.
    response = auth_client.post(
        f"{BASE}/{conversation}/messages/", {"content": "More"}, format="json"
    )
    assert response.status_code == 409
    work_until_idle()


def test_only_replies_regenerate_and_only_user_messages_edit(auth_client, conversation, standin):
    posted = send(auth_client, conversation, "Hi")
    work_until_idle()
    response = regenerate(auth_client, conversation, posted["user_message"]["id"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_a_reply"
    response = edit(auth_client, conversation, posted["assistant_message"]["id"], "x")
    assert response.status_code == 400
    assert edit(auth_client, conversation, posted["user_message"]["id"], "  ").status_code == 400
    response = regenerate(
        auth_client, conversation, posted["assistant_message"]["id"], {"model": "no-such-model"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "model_unknown"
    response = regenerate(
        auth_client,
        conversation,
        posted["assistant_message"]["id"],
        {"params": {"max_tokens": 10**6}},
    )
    assert response.status_code == 400
    assert Message.objects.count() == 2


def test_regenerate_is_idempotent(auth_client, conversation, standin):
    posted = send(auth_client, conversation, "Once")
    work_until_idle()
    reply = posted["assistant_message"]["id"]
    first = regenerate(auth_client, conversation, reply, HTTP_IDEMPOTENCY_KEY="regen-1")
    again = regenerate(auth_client, conversation, reply, HTTP_IDEMPOTENCY_KEY="regen-1")
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["assistant_message"]["id"] == again.json()["assistant_message"]["id"]
    assert Job.objects.count() == 2  # the post and one regenerate
    # The same key for a different request is refused.
    different = regenerate(
        auth_client,
        conversation,
        reply,
        {"params": {"max_tokens": 5}},
        HTTP_IDEMPOTENCY_KEY="regen-1",
    )
    assert different.status_code == 422
    work_until_idle()
    # Replayed after the reply finished, still the one reply.
    late = regenerate(auth_client, conversation, reply, HTTP_IDEMPOTENCY_KEY="regen-1")
    assert late.json()["assistant_message"]["id"] == first.json()["assistant_message"]["id"]
    assert Message.objects.filter(role="assistant").count() == 2


def test_listing_a_branch_costs_the_same_whatever_its_length(auth_client, conversation, standin):
    def cost() -> tuple[int, int]:
        url = f"{BASE}/{conversation}/messages/"
        return queries_for_get(auth_client, url), queries_for_get(auth_client, url + "?all=true")

    send(auth_client, conversation, "one")
    work_until_idle()
    short = cost()
    for text in ("two", "three", "four"):
        posted = send(auth_client, conversation, text)
        work_until_idle()
        regenerate(auth_client, conversation, posted["assistant_message"]["id"])
        work_until_idle()
    assert len(branch(auth_client, conversation)) == 8
    assert cost() == short
