"""What schemathesis found (tests/test_schema_fuzz.py), pinned one by one: statuses the schema
left out, the event stream's shape, and input the API quietly misread."""

import pytest

from tests.llm.factories import ConversationFactory, StandinModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def openapi(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    "path", ["auth/token/", "auth/token/refresh/", "auth/token/verify/", "auth/logout/"]
)
def test_credential_endpoints_document_their_401(openapi, path):
    responses = openapi["paths"][f"/api/v1/{path}"]["post"]["responses"]
    assert "401" in responses
    assert responses["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }


def test_closed_registration_documents_its_403(openapi):
    assert "403" in openapi["paths"]["/api/v1/auth/register/"]["post"]["responses"]


def test_stream_documents_each_event_not_a_string(openapi):
    path = "/api/v1/conversations/{conversation_pk}/messages/{message_pk}/stream/"
    content = openapi["paths"][path]["get"]["responses"]["200"]["content"]
    event = content["text/event-stream"]["schema"]
    assert event["type"] == "object"
    assert event["required"] == ["event", "data"]
    assert event["properties"]["event"]["enum"] == ["delta", "reset", "done", "error"]


def test_optional_query_parameters_may_be_empty(openapi):
    parameters = openapi["paths"]["/api/v1/jobs/"]["get"]["parameters"]
    status = next(p for p in parameters if p["name"] == "status")
    assert status["allowEmptyValue"] is True


@pytest.mark.parametrize("page_size", ["abc", "0", "-1", "1.5", "null"])
def test_a_page_size_that_is_not_a_whole_number_is_a_400(auth_client, page_size):
    response = auth_client.get("/api/v1/conversations/", {"page_size": page_size})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"page_size": ["A whole number of at least 1."]}


def test_page_size_empty_means_default_and_huge_means_the_most(auth_client, user):
    ConversationFactory.create_batch(3, owner=user)
    assert len(auth_client.get("/api/v1/conversations/?page_size=").json()["results"]) == 3
    response = auth_client.get("/api/v1/conversations/", {"page_size": "9" * 5000})
    assert response.status_code == 200
    assert response.json()["count"] == 3


def test_archived_filter_refuses_what_is_not_a_boolean(auth_client, user):
    ConversationFactory(owner=user, archived=True)
    ConversationFactory(owner=user, archived=False)
    refused = auth_client.get("/api/v1/conversations/", {"archived": "-58800"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_archived"
    assert auth_client.get("/api/v1/conversations/?archived=").json()["count"] == 2
    assert auth_client.get("/api/v1/conversations/?archived=true").json()["count"] == 1


def test_stream_answers_other_methods_405_with_allow(auth_client, user):
    conversation = ConversationFactory(owner=user)
    path = f"/api/v1/conversations/{conversation.pk}/messages/{conversation.pk}/stream/"
    response = auth_client.post(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_new_conversation_with_a_current_leaf_is_a_400_not_a_500(auth_client):
    model = StandinModelFactory()
    response = auth_client.post(
        "/api/v1/conversations/",
        {"model": model.slug, "current_leaf": "e3e70682-c209-1cac-a29f-6fbed82c07cd"},
        format="json",
    )
    assert response.status_code == 400
    assert "current_leaf" in response.json()["error"]["details"]
