"""Staff edit and delete conversations in the admin through the same services as the API:
the same rules hold, and deleting stops a reply still being written."""

import pytest

from jobs.models import Job, JobStatus
from llm.models import Conversation, Message
from llm.providers.canonical import ImagePart, TextPart, ToolCallPart
from llm.providers.canonical_json import parts_dump
from tests.llm.factories import ConversationFactory, StandinModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def change_url(conversation) -> str:
    return f"/admin/llm/conversation/{conversation.pk}/change/"


def form_data(conversation, **changes) -> dict:
    data = {
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "temperature": "",
        "max_tokens": "",
        "archived": "",
        # the read-only message inline's management form
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_staff_edit_is_saved(staff, user):
    conversation = ConversationFactory(owner=user)
    response = staff.post(
        change_url(conversation),
        form_data(conversation, title="Renamed by staff", max_tokens="100", archived="on"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    conversation.refresh_from_db()
    assert conversation.title == "Renamed by staff"
    assert conversation.max_tokens == 100 and conversation.archived


def test_staff_edit_obeys_the_model_limit(staff, user):
    model = StandinModelFactory(max_output_tokens=1024)
    conversation = ConversationFactory(owner=user, model=model, title="Before")
    response = staff.post(
        change_url(conversation), form_data(conversation, title="After", max_tokens="5000")
    )
    assert response.status_code == 200  # the form again, with the service's reason
    assert "max_tokens may be at most 1024" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Before" and conversation.max_tokens is None


def test_admin_delete_cancels_the_reply_in_flight(staff, user, auth_client, standin):
    model = StandinModelFactory()
    conversation_id = auth_client.post(
        "/api/v1/conversations/", {"model": model.slug}, format="json"
    ).json()["id"]
    posted = auth_client.post(
        f"/api/v1/conversations/{conversation_id}/messages/", {"content": "hi"}, format="json"
    ).json()
    response = staff.post(f"/admin/llm/conversation/{conversation_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    assert Job.objects.get(pk=posted["job"]["id"]).status == JobStatus.CANCELLED


def test_admin_bulk_delete_cancels_replies_in_flight(staff, user, auth_client, standin):
    model = StandinModelFactory()
    ids, jobs = [], []
    for _ in range(2):
        conversation_id = auth_client.post(
            "/api/v1/conversations/", {"model": model.slug}, format="json"
        ).json()["id"]
        posted = auth_client.post(
            f"/api/v1/conversations/{conversation_id}/messages/", {"content": "hi"}, format="json"
        ).json()
        ids.append(conversation_id)
        jobs.append(posted["job"]["id"])
    response = staff.post(
        "/admin/llm/conversation/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk__in=ids).exists()
    assert set(Job.objects.filter(pk__in=jobs).values_list("status", flat=True)) == {
        JobStatus.CANCELLED
    }


def test_staff_see_a_messages_tool_calls_and_images(staff, user):
    """An agent's conversation (a stored /v1/responses chain) shows what each turn held."""
    conversation = ConversationFactory(owner=user)
    Message.objects.create(
        conversation=conversation,
        position=1,
        role="user",
        content="What is this?",
        parts=parts_dump([TextPart("What is this?"), ImagePart(url="https://example.com/a.png")]),
    )
    Message.objects.create(
        conversation=conversation,
        position=2,
        role="assistant",
        parts=parts_dump([ToolCallPart(id="c1", name="lookup", arguments='{"q": "a.png"}')]),
    )
    page = staff.get(change_url(conversation)).content.decode()
    assert "What is this? [image]" in page
    assert "[tool call lookup({&quot;q&quot;: &quot;a.png&quot;})]" in page
