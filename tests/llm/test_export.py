"""Exporting a conversation as a file, from the API and from the admin: the current branch as
JSON or Markdown, the whole tree as JSON, with a file name to save it under."""

import json

import pytest

from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/conversations"


@pytest.fixture
def branched(auth_client, standin) -> dict:
    """A conversation 'Trip to Rome' whose first reply was regenerated: two replies to the
    same question, the second one current."""
    model = StandinModelFactory(slug="export-model")
    conversation = auth_client.post(
        f"{BASE}/",
        {"model": model.slug, "title": "Trip to Rome", "system_prompt": "Be a guide."},
        format="json",
    ).json()["id"]
    first = auth_client.post(
        f"{BASE}/{conversation}/messages/", {"content": "Where should I eat?"}, format="json"
    ).json()
    work_until_idle()
    again = auth_client.post(
        f"{BASE}/{conversation}/messages/{first['assistant_message']['id']}/regenerate/",
        format="json",
    ).json()
    work_until_idle()
    return {
        "id": conversation,
        "question": first["user_message"]["id"],
        "old_reply": first["assistant_message"]["id"],
        "reply": again["assistant_message"]["id"],
    }


def export(client, conversation, query=""):
    return client.get(f"{BASE}/{conversation}/export/{query}")


def test_json_export_is_the_current_branch(auth_client, branched):
    response = export(auth_client, branched["id"], "?format=json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f'filename="trip-to-rome-{branched["id"][:8]}.json"' in disposition
    data = json.loads(response.content)
    assert data["title"] == "Trip to Rome" and data["model"] == "export-model"
    assert data["system_prompt"] == "Be a guide." and data["branch"] == "current"
    assert [m["id"] for m in data["messages"]] == [branched["question"], branched["reply"]]
    assert data["messages"][1]["content"].startswith('You said: "Where should I eat?"')
    assert data["messages"][1]["cost"] is not None
    # No format means JSON.
    assert json.loads(export(auth_client, branched["id"]).content)["messages"] == data["messages"]


def test_json_export_of_the_whole_tree(auth_client, branched):
    data = json.loads(export(auth_client, branched["id"], "?format=json&all=true").content)
    assert data["branch"] == "all"
    assert [(m["id"], m["parent"]) for m in data["messages"]] == [
        (branched["question"], None),
        (branched["old_reply"], branched["question"]),
        (branched["reply"], branched["question"]),
    ]


def test_markdown_export(auth_client, branched):
    response = export(auth_client, branched["id"], "?format=markdown")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"].endswith(f'trip-to-rome-{branched["id"][:8]}.md"')
    text = response.content.decode()
    assert text.startswith("# Trip to Rome\n")
    assert "## System prompt\n\nBe a guide.\n" in text
    assert "## User\n\nWhere should I eat?\n" in text
    assert "## Assistant (export-model)\n\nYou said:" in text
    assert text.count("## Assistant") == 1  # the current branch only


def test_bad_requests_are_400_and_others_conversations_404(auth_client, other_client, branched):
    response = export(auth_client, branched["id"], "?format=pdf")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert "format" in response.json()["error"]["details"]
    response = export(auth_client, branched["id"], "?format=markdown&all=true")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_format"
    assert export(other_client, branched["id"]).status_code == 404


def test_untitled_conversation_file_name(auth_client, standin):
    model = StandinModelFactory(slug="export-untitled")
    conversation = auth_client.post(f"{BASE}/", {"model": model.slug}, format="json").json()["id"]
    response = export(auth_client, conversation, "?format=markdown")
    assert f'filename="conversation-{conversation[:8]}.md"' in response["Content-Disposition"]
    assert response.content.decode().startswith(f"# Conversation {conversation}")


def test_admin_exports_the_same_file(client, staff_user, auth_client, branched):
    client.force_login(staff_user)
    page = client.get(f"/admin/llm/conversation/{branched['id']}/change/")
    assert page.status_code == 200
    assert f"/admin/llm/conversation/{branched['id']}/export/markdown/" in page.content.decode()

    response = client.get(f"/admin/llm/conversation/{branched['id']}/export/markdown/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    api = export(auth_client, branched["id"], "?format=markdown").content.decode()
    # Identical but for the export time line.
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("- Exported")]  # noqa: E731
    assert strip(response.content.decode()) == strip(api)

    tree = client.get(f"/admin/llm/conversation/{branched['id']}/export/json/?all=true")
    assert len(json.loads(tree.content)["messages"]) == 3
    assert client.get(f"/admin/llm/conversation/{branched['id']}/export/pdf/").status_code == 400
    client.logout()
    anonymous = client.get(f"/admin/llm/conversation/{branched['id']}/export/json/")
    assert anonymous.status_code == 302  # to the admin login
