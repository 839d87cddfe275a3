"""Hostile and odd input meets a 4xx in the error shape, never a 500: numbers and ids out of
range, pagination, and the schema's view of every list's objects."""

import pytest

from tests.llm.factories import ConversationFactory

pytestmark = pytest.mark.django_db


def error_of(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body["error"]) == {"status", "code", "message", "details", "request_id"}
    assert body["error"]["status"] == status
    return body["error"]


DEEP_BODIES = {
    "lists": "[" * 100_000,
    "objects": '{"a":' * 50_000,
    "closed lists": "[" * 20_000 + "]" * 20_000,
}


class TestDeeplyNestedJson:
    @pytest.mark.parametrize("shape", DEEP_BODIES)
    @pytest.mark.parametrize(
        "url",
        [
            "/api/v1/auth/token/",
            "/api/v1/auth/register/",
            "/api/v1/auth/token/refresh/",
            "/api/v1/auth/token/verify/",
            "/api/v1/auth/logout/",
        ],
    )
    def test_unauthenticated_endpoints_answer_400(self, api_client, url, shape):
        body = DEEP_BODIES[shape]
        response = api_client.generic("POST", url, body, content_type="application/json")
        assert error_of(response, 400)["code"] == "parse_error"

    @pytest.mark.parametrize(
        "method,url",
        [("PATCH", "/api/v1/auth/me/"), ("POST", "/api/v1/conversations/")],
    )
    def test_authenticated_endpoints_answer_400(self, auth_client, method, url):
        response = auth_client.generic(
            method, url, DEEP_BODIES["lists"], content_type="application/json"
        )
        assert error_of(response, 400)["code"] == "parse_error"

    def test_messages_endpoint_answers_400_and_stores_nothing(self, auth_client, user):
        conversation = ConversationFactory(owner=user)
        response = auth_client.generic(
            "POST",
            f"/api/v1/conversations/{conversation.pk}/messages/",
            DEEP_BODIES["objects"],
            content_type="application/json",
        )
        assert error_of(response, 400)["code"] == "parse_error"
        assert not conversation.messages.exists()

    def test_modest_nesting_still_parses(self, auth_client):
        # Nesting Python's parser handles reaches the serializer, which refuses it as a field.
        body = '{"name": ' + "[" * 50 + "]" * 50 + "}"
        response = auth_client.generic(
            "PATCH", "/api/v1/auth/me/", body, content_type="application/json"
        )
        assert "name" in error_of(response, 400)["details"]


class TestNumbersAndIdsAreBounded:
    @pytest.mark.parametrize("user_id", ["99999999999999999999", "9223372036854775808", "0", "-3"])
    def test_usage_user_out_of_range_is_400(self, staff_client, user_id):
        error = error_of(staff_client.get(f"/api/v1/usage/?user={user_id}"), 400)
        assert "user" in error["details"]

    @pytest.mark.parametrize(
        "query",
        [
            "since=9999-12-30&until=9999-12-31",
            "since=9999-12-31&until=9999-12-31",
            "since=99999-01-01",
        ],
    )
    def test_usage_dates_past_the_calendar_are_400(self, auth_client, query):
        error_of(auth_client.get(f"/api/v1/usage/?{query}"), 400)

    def test_usage_at_the_edges_of_the_calendar_is_an_empty_report(self, auth_client):
        for query in ("since=0001-01-01&until=0001-01-05", "since=9999-12-29&until=9999-12-30"):
            response = auth_client.get(f"/api/v1/usage/?{query}")
            assert response.status_code == 200, response.content
            assert response.json()["total"]["requests"] == 0

    def test_usage_user_at_the_top_of_the_range_is_an_empty_report(self, staff_client):
        response = staff_client.get("/api/v1/usage/?user=9223372036854775807")
        assert response.status_code == 200
        assert response.json()["total"]["requests"] == 0

    @pytest.mark.parametrize(
        "query", ["page=99999999999999999999999", "page=1e400", "page=-1", "page=0", "page=x"]
    )
    def test_a_page_that_does_not_exist_is_404(self, auth_client, query):
        for url in ("/api/v1/jobs/", "/api/v1/conversations/", "/api/v1/auth/api-keys/"):
            assert error_of(auth_client.get(f"{url}?{query}"), 404)["code"] == "not_found"

    @pytest.mark.parametrize("size", ["99999999999999999999999", "9" * 5000])
    def test_a_huge_page_size_is_capped(self, auth_client, user, size):
        ConversationFactory.create_batch(3, owner=user)
        body = auth_client.get(f"/api/v1/conversations/?page_size={size}").json()
        assert body["count"] == 3 and len(body["results"]) == 3

    @pytest.mark.parametrize("size", ["1e400", "-5", "abc", "0", "1.5"])
    def test_a_page_size_that_is_not_a_count_is_400(self, auth_client, size):
        error = error_of(auth_client.get(f"/api/v1/conversations/?page_size={size}"), 400)
        assert "page_size" in error["details"]

    @pytest.mark.parametrize(
        "url",
        [
            "/api/v1/auth/api-keys/99999999999999999999999/",
            "/api/v1/auth/api-keys/-1/",
            "/api/v1/auth/api-keys/1.5/",
            "/api/v1/jobs/0.5/",
            "/api/v1/conversations/12345678901234567890/",
        ],
    )
    def test_ids_out_of_range_or_malformed_are_404(self, auth_client, url):
        assert error_of(auth_client.get(url), 404)["code"] == "not_found"


def test_message_views_describe_messages_to_the_schema():
    from llm.api.views import MessageViewSet
    from llm.models import Message

    view = MessageViewSet()
    view.swagger_fake_view = True
    assert view.get_queryset().model is Message
