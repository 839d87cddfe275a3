"""Conversations and messages over HTTP, without running completions: CRUD, validation,
ownership, limits, idempotency, query counts."""

import pytest

from jobs.models import Job
from llm.models import Conversation, LLMModel, Message
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def standin_configured(settings):
    settings.STANDIN_BASE_URL = "http://127.0.0.1:9"  # never called in these tests


@pytest.fixture
def model():
    return StandinModelFactory(slug="standin-test")


def create(client, **body):
    return client.post("/api/v1/conversations/", {"model": "standin-test", **body}, format="json")


class TestModels:
    def test_only_callable_models_are_offered(self, auth_client, model, settings):
        StandinModelFactory(slug="disabled-one", enabled=False)
        LLMModel.objects.create(
            slug="real-gpt",
            display_name="Real",
            provider="openai",
            provider_model="gpt-4.1",
            context_window=1000,
            max_output_tokens=100,
        )
        slugs = [m["slug"] for m in auth_client.get("/api/v1/models/").json()["results"]]
        assert slugs == ["standin-test"]
        settings.STANDIN_BASE_URL = ""
        assert auth_client.get("/api/v1/models/").json()["count"] == 0

    def test_model_fields(self, auth_client, model):
        body = auth_client.get("/api/v1/models/").json()["results"][0]
        assert body == {
            "slug": "standin-test",
            "provider": "openai",
            "display_name": "standin-test",
            "context_window": 16384,
            "max_output_tokens": 1024,
            "input_price_per_mtok": "3.0000",
            "output_price_per_mtok": "15.0000",
            "cache_read_price_per_mtok": None,
            "cache_write_price_per_mtok": None,
            "kind": "chat",
            "is_standin": True,
        }

    def test_key_configured_models_are_offered(self, auth_client, monkeypatch):
        LLMModel.objects.create(
            slug="claude",
            display_name="Claude",
            provider="anthropic",
            provider_model="claude-sonnet-4-5",
            context_window=200_000,
            max_output_tokens=64_000,
        )
        assert auth_client.get("/api/v1/models/").json()["count"] == 0
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
        assert auth_client.get("/api/v1/models/claude/").status_code == 200


class TestConversations:
    def test_create_and_read(self, auth_client, model):
        response = create(
            auth_client,
            title="Plans",
            system_prompt="Be brief.",
            params={"temperature": 0.2, "max_tokens": 300},
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["model"] == "standin-test"
        assert body["params"] == {"temperature": 0.2, "max_tokens": 300}
        assert body["archived"] is False
        assert set(body) >= {"id", "title", "system_prompt", "created_at", "updated_at"}
        assert auth_client.get(f"/api/v1/conversations/{body['id']}/").json() == body

    def test_unknown_model_is_a_400_that_says_why(self, auth_client, model):
        error = create(auth_client, model="nope").json()["error"]
        assert error["code"] == "model_unknown"
        assert "nope" in error["message"]

    def test_uncallable_model_is_a_400_that_says_why(self, auth_client):
        LLMModel.objects.create(
            slug="gpt-x",
            display_name="X",
            provider="openai",
            provider_model="gpt-x",
            context_window=1000,
            max_output_tokens=100,
        )
        response = create(auth_client, model="gpt-x")
        assert response.status_code == 400
        assert "OPENAI_API_KEY" in response.json()["error"]["message"]
        assert not Conversation.objects.exists()

    @pytest.mark.parametrize(
        "params",
        [{"temperature": 2.5}, {"temperature": -1}, {"max_tokens": 0}, {"max_tokens": 5000}],
    )
    def test_bad_params(self, auth_client, model, params):
        response = create(auth_client, params=params)
        assert response.status_code == 400
        assert not Conversation.objects.exists()

    def test_limits_on_text_fields(self, auth_client, model, settings):
        assert create(auth_client, title="x" * 201).status_code == 400
        settings.LLM_MAX_SYSTEM_PROMPT_CHARS = 10
        assert create(auth_client, system_prompt="x" * 11).status_code == 400

    def test_patch_archive_and_title(self, auth_client, model, user):
        conversation = ConversationFactory(owner=user, model=model)
        url = f"/api/v1/conversations/{conversation.pk}/"
        body = auth_client.patch(url, {"archived": True, "title": "Old"}, format="json").json()
        assert body["archived"] is True and body["title"] == "Old"
        body = auth_client.patch(url, {"params": {"temperature": 1}}, format="json").json()
        assert body["params"]["temperature"] == 1.0

    def test_search_and_archived_filters(self, auth_client, user, model):
        ConversationFactory(owner=user, model=model, title="Tax questions")
        ConversationFactory(owner=user, model=model, title="Holiday", archived=True)

        def titles(query):
            response = auth_client.get(f"/api/v1/conversations/{query}")
            return [c["title"] for c in response.json()["results"]]

        assert titles("?search=tax") == ["Tax questions"]
        assert titles("?archived=true") == ["Holiday"]
        assert titles("?archived=false") == ["Tax questions"]

    def test_delete(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        assert auth_client.delete(f"/api/v1/conversations/{conversation.pk}/").status_code == 204
        assert not Conversation.objects.exists()

    def test_another_users_conversation_is_404_everywhere(self, other_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        base = f"/api/v1/conversations/{conversation.pk}/"
        assert other_client.get(base).status_code == 404
        assert other_client.patch(base, {"title": "mine"}, format="json").status_code == 404
        assert other_client.delete(base).status_code == 404
        assert other_client.get(base + "messages/").status_code == 404
        assert (
            other_client.post(base + "messages/", {"content": "hi"}, format="json").status_code
            == 404
        )
        assert other_client.get("/api/v1/conversations/").json()["count"] == 0
        assert Conversation.objects.get().title == conversation.title

    def test_malformed_id_is_404(self, auth_client):
        assert auth_client.get("/api/v1/conversations/not-a-uuid/").status_code == 404

    def test_list_queries_do_not_grow(self, auth_client, user, model):
        ConversationFactory.create_batch(2, owner=user, model=model)
        few = queries_for_get(auth_client, "/api/v1/conversations/")
        ConversationFactory.create_batch(20, owner=user, model=model)
        assert queries_for_get(auth_client, "/api/v1/conversations/") == few


class TestPostingMessages:
    def post(self, client, conversation, content="Hello there", **headers):
        return client.post(
            f"/api/v1/conversations/{conversation.pk}/messages/",
            {"content": content},
            format="json",
            **headers,
        )

    def test_post_answers_202_with_message_reply_and_job(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        response = self.post(auth_client, conversation)
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["user_message"]["role"] == "user"
        assert body["user_message"]["content"] == "Hello there"
        assert body["assistant_message"]["status"] == "queued"
        assert body["assistant_message"]["role"] == "assistant"
        assert body["job"]["status"] == "queued"
        assert body["job"]["kind"] == "llm.completion"
        job = Job.objects.get(pk=body["job"]["id"])
        assert job.payload["message_id"] == body["assistant_message"]["id"]
        listed = auth_client.get(f"/api/v1/conversations/{conversation.pk}/messages/").json()
        assert [m["role"] for m in listed["results"]] == ["user", "assistant"]

    def test_second_message_while_a_reply_is_pending_is_409(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        self.post(auth_client, conversation)
        response = self.post(auth_client, conversation, "again")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "reply_in_progress"
        assert Message.objects.count() == 2

    def test_empty_and_too_long_messages(self, auth_client, user, model, settings):
        conversation = ConversationFactory(owner=user, model=model)
        assert self.post(auth_client, conversation, "   ").status_code == 400
        settings.LLM_MAX_MESSAGE_CHARS = 10
        response = self.post(auth_client, conversation, "x" * 11)
        assert response.status_code == 400
        assert "content" in response.json()["error"]["details"]
        assert not Message.objects.exists()

    def test_body_over_the_size_limit_is_413(self, auth_client, user, model, settings):
        conversation = ConversationFactory(owner=user, model=model)
        settings.MAX_REQUEST_BODY_BYTES = 100
        assert self.post(auth_client, conversation, "x" * 200).status_code == 413
        assert not Message.objects.exists()

    def test_conversation_message_limit(self, auth_client, user, model, settings):
        settings.LLM_MAX_MESSAGES_PER_CONVERSATION = 1
        conversation = ConversationFactory(owner=user, model=model)
        response = self.post(auth_client, conversation)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "conversation_full"

    def test_archived_conversation_refuses_messages(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model, archived=True)
        assert self.post(auth_client, conversation).status_code == 409

    def test_exhausted_budget_refuses_messages(self, auth_client, user, model):
        from budgets.services import budget_set

        budget_set(user=user, period="monthly", limit_tokens=100)
        conversation = ConversationFactory(owner=user, model=model)
        response = self.post(auth_client, conversation)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "budget_exceeded"
        assert conversation.messages.count() == 0

    def test_idempotency_key_replays_the_original(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        first = self.post(auth_client, conversation, HTTP_IDEMPOTENCY_KEY="k-1")
        again = self.post(auth_client, conversation, HTTP_IDEMPOTENCY_KEY="k-1")
        assert again.status_code == 202
        assert again.json() == first.json() | {"job": again.json()["job"]}
        assert again.json()["job"]["id"] == first.json()["job"]["id"]
        assert again["Idempotent-Replayed"] == "true"
        assert Job.objects.count() == 1 and Message.objects.count() == 2

    def test_idempotency_key_with_a_different_body_is_422(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        self.post(auth_client, conversation, HTTP_IDEMPOTENCY_KEY="k-2")
        response = self.post(auth_client, conversation, "different", HTTP_IDEMPOTENCY_KEY="k-2")
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert Message.objects.count() == 2

    def test_message_detail_and_404s(self, auth_client, other_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        body = self.post(auth_client, conversation).json()
        url = f"/api/v1/conversations/{conversation.pk}/messages/{body['assistant_message']['id']}/"
        assert auth_client.get(url).json()["status"] == "queued"
        assert other_client.get(url).status_code == 404
        assert other_client.get(url + "stream/").status_code == 404
        other = ConversationFactory(owner=user, model=model)
        wrong_conversation = (
            f"/api/v1/conversations/{other.pk}/messages/{body['assistant_message']['id']}/"
        )
        assert auth_client.get(wrong_conversation).status_code == 404

    def test_stream_requires_authentication(self, api_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        url = f"/api/v1/conversations/{conversation.pk}/messages/{conversation.pk}/stream/"
        response = api_client.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"

    def test_messages_list_queries_do_not_grow(self, auth_client, user, model):
        conversation = ConversationFactory(owner=user, model=model)
        for position in range(1, 3):
            Message.objects.create(
                conversation=conversation, position=position, role="user", content="x"
            )
        url = f"/api/v1/conversations/{conversation.pk}/messages/"
        few = queries_for_get(auth_client, url)
        for position in range(3, 23):
            Message.objects.create(
                conversation=conversation,
                position=position,
                role="assistant",
                content="y",
                model=model,
            )
        assert queries_for_get(auth_client, url) == few
