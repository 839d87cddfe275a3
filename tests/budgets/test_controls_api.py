"""Spend controls as an API client meets them: budget and rate-limit refusals, headers, model
access, usage by key (the in-process API client; the concurrent tests are in
test_admission_api.py)."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_create
from budgets.models import BudgetLedger, Reservation
from budgets.services import budget_set, rate_limit_set
from llm.models import ModelAccess, Usage
from project.money import micros
from tests.live import work_until_idle
from tests.llm.factories import ConversationFactory, StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)  # replies are enqueued on commit


@pytest.fixture(autouse=True)
def _standin(standin):
    return standin


def _key_client(user, name="ci") -> tuple[APIClient, object]:
    issued = api_key_create(owner=user, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client, issued.api_key


def _post(client, conversation, content="Hello, Parley"):
    return client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/", {"content": content}, format="json"
    )


def _restrict(models, **subject) -> None:
    ModelAccess.objects.create(**subject).allowed_models.set(models)


class TestBudgets:
    def test_a_spent_budget_refuses_with_429_and_stores_nothing(self, auth_client, user):
        conversation = ConversationFactory(owner=user)
        budget_set(user=user, period="daily", limit_micros=micros("0.000010"))
        response = _post(auth_client, conversation)
        assert response.status_code == 429, response.content
        error = response.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert error["details"]["budget"]["period"] == "daily"
        assert error["details"]["budget"]["remaining_usd"] == "0.000010"
        assert error["details"]["budget"]["resets_at"].endswith("T00:00:00Z")
        assert "Retry-After" not in response  # waiting a minute does not help
        assert conversation.messages.count() == 0
        assert not Reservation.objects.exists()

    def test_a_reply_settles_to_its_cost_and_usage_matches(self, user):
        client, key = _key_client(user)
        conversation = ConversationFactory(owner=user)
        budget = budget_set(user=user, period="monthly", limit_micros=micros("5"))
        key_budget = budget_set(api_key=key, period="lifetime", limit_tokens=100_000)
        assert _post(client, conversation).status_code == 202
        ledger = BudgetLedger.objects.get(budget=budget)
        assert ledger.reserved_micros > 0
        work_until_idle()
        usage = Usage.objects.get()
        assert usage.api_key == key
        ledger.refresh_from_db()
        assert (ledger.spent_micros, ledger.reserved_micros) == (usage.cost_micros, 0)
        key_ledger = BudgetLedger.objects.get(budget=key_budget)
        assert key_ledger.spent_tokens == usage.input_tokens + usage.output_tokens
        assert key_ledger.reserved_tokens == 0
        [shown] = client.get("/api/v1/auth/me/").json()["budgets"]
        assert micros(shown["spent_usd"]) == usage.cost_micros

    def test_a_failed_reply_releases_its_reservation(self, auth_client, user):
        model = StandinModelFactory(provider_model="standin-400")
        conversation = ConversationFactory(owner=user, model=model)
        budget = budget_set(user=user, period="daily", limit_micros=micros("5"))
        assert _post(auth_client, conversation).status_code == 202
        work_until_idle()
        ledger = BudgetLedger.objects.get(budget=budget)
        assert (ledger.spent_micros, ledger.reserved_micros) == (0, 0)
        assert Reservation.objects.get().status == "released"

    def test_a_manual_retry_reserves_again_and_fails_if_the_budget_cannot_cover_it(
        self, auth_client, user
    ):
        model = StandinModelFactory(provider_model="standin-400")  # fails permanently
        conversation = ConversationFactory(owner=user, model=model)
        budget = budget_set(user=user, period="daily", limit_micros=micros("5"))
        job = _post(auth_client, conversation).json()["job"]
        work_until_idle()
        assert Reservation.objects.get().status == "released"
        budget_set(user=user, period="daily", limit_micros=micros("0.000001"))
        assert auth_client.post(f"/api/v1/jobs/{job['id']}/retry/").status_code == 200
        work_until_idle()
        failed = auth_client.get(f"/api/v1/jobs/{job['id']}/").json()
        assert failed["status"] == "failed"
        assert "budget cannot cover" in failed["error"]
        ledger = BudgetLedger.objects.get(budget=budget)
        assert (ledger.reserved_micros, ledger.spent_micros) == (0, 0)
        assert Reservation.objects.count() == 1  # the refused retry held nothing

    def test_a_cancelled_reply_releases_its_reservation(self, auth_client, user):
        conversation = ConversationFactory(owner=user)
        budget = budget_set(user=user, period="daily", limit_micros=micros("5"))
        job = _post(auth_client, conversation).json()["job"]
        assert auth_client.post(f"/api/v1/jobs/{job['id']}/cancel/").status_code == 200
        ledger = BudgetLedger.objects.get(budget=budget)
        assert (ledger.spent_micros, ledger.reserved_micros) == (0, 0)


class TestRateLimits:
    def test_headers_on_success_and_429_with_retry_after(self, user):
        client, key = _key_client(user)
        rate_limit_set(api_key=key, requests_per_minute=2, tokens_per_minute=None)
        conversations = [ConversationFactory(owner=user) for _ in range(3)]
        first = _post(client, conversations[0])
        assert first.status_code == 202
        assert first["x-ratelimit-limit-requests"] == "2"
        assert first["x-ratelimit-remaining-requests"] == "1"
        assert first["x-ratelimit-reset-requests"] == "1m0s"
        assert _post(client, conversations[1]).status_code == 202
        refused = _post(client, conversations[2])
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused["Retry-After"]) <= 60
        assert refused["x-ratelimit-remaining-requests"] == "0"
        assert conversations[2].messages.count() == 0

    def test_no_limits_no_headers(self, auth_client, user):
        response = _post(auth_client, ConversationFactory(owner=user))
        assert response.status_code == 202
        assert "x-ratelimit-limit-requests" not in response


class TestModelAccess:
    def test_models_lists_only_what_the_caller_may_use(self, user):
        allowed, other = StandinModelFactory(), StandinModelFactory()
        client, key = _key_client(user)
        _restrict([allowed], api_key=key)
        slugs = {m["slug"] for m in client.get("/api/v1/models/").json()["results"]}
        assert allowed.slug in slugs and other.slug not in slugs
        response = client.get(f"/api/v1/models/{other.slug}/")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "model_not_allowed"

    def test_another_model_is_a_403_that_says_why(self, auth_client, user):
        allowed, other = StandinModelFactory(), StandinModelFactory()
        _restrict([allowed], user=user)
        response = auth_client.post("/api/v1/conversations/", {"model": other.slug})
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "model_not_allowed"
        assert "Your account is not allowed" in error["message"]
        assert (
            auth_client.post("/api/v1/conversations/", {"model": allowed.slug}).status_code == 201
        )
        # A conversation started before the restriction cannot be continued on that model.
        old = ConversationFactory(owner=user, model=other)
        refused = _post(auth_client, old)
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["restricted_by"] == "user"


class TestUsageByKey:
    def test_usage_and_the_report_group_by_key(self, user):
        client, key = _key_client(user)
        for _ in range(2):
            assert _post(client, ConversationFactory(owner=user)).status_code == 202
            work_until_idle()
        report = client.get("/api/v1/usage/").json()
        [row] = report["by_api_key"]
        assert row["api_key"] == key.pk and row["api_key_name"] == "ci" and row["requests"] == 2
        today = timezone.now().date()
        out = StringIO()
        call_command(
            "usage_report",
            f"--since={today - timedelta(days=1)}",
            f"--until={today}",
            "--group-by=api_key",
            "--format=json",
            stdout=out,
        )
        assert f'"api_key": "{key.prefix}' in out.getvalue()
