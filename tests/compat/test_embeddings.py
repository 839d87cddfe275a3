"""``/v1/embeddings`` with the official OpenAI SDK against a live Parley: the catalog's
embedding models, priced and budgeted and recorded like any call; and
``/v1/messages/count_tokens`` with the official Anthropic SDK for both model families."""

import base64
import io
import struct
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from django.core.management import call_command

from budgets.models import BudgetLedger, Reservation
from budgets.selectors import budget_statuses
from budgets.services import budget_set, rate_limit_set
from llm.models import GatewayCall, ModelAccess, Usage
from llm.providers import completion_cost_micros
from project.money import micros
from tests.compat.conftest import recorded_call
from tests.llm.factories import StandinModelFactory
from tests.teams.factories import make_team


@pytest.fixture
def embedder(catalog):
    return StandinModelFactory(
        slug="embed-standin",
        kind="embedding",
        provider_model="standin-embed",
        context_window=8_192,
        max_output_tokens=1,
        input_price_per_mtok=Decimal("0.02"),
        output_price_per_mtok=Decimal(0),
    )


def test_a_list_of_strings_is_embedded_priced_and_recorded(openai_client, embedder, user):
    result = openai_client.embeddings.create(
        model="embed-standin", input=["hello world", "goodbye", "hello world"]
    )
    assert [item.index for item in result.data] == [0, 1, 2]
    vectors = [item.embedding for item in result.data]
    assert len(vectors[0]) == 1536 and vectors[0] == vectors[2] != vectors[1]
    assert result.model == "embed-standin"
    tokens = result.usage.prompt_tokens
    assert tokens == result.usage.total_tokens > 0
    call = recorded_call()
    assert (call.endpoint, call.status, call.model.slug) == (
        "embeddings",
        "completed",
        "embed-standin",
    )
    assert (call.input_tokens, call.output_tokens) == (tokens, 0)
    expected = completion_cost_micros(
        input_tokens=tokens,
        output_tokens=0,
        input_price_per_mtok=Decimal("0.02"),
        output_price_per_mtok=Decimal(0),
    )
    assert call.cost_micros == expected
    usage = Usage.objects.get()
    assert (usage.user, usage.input_tokens, usage.cost_micros) == (user, tokens, expected)


def test_an_embedding_charged_to_a_team_is_held_against_the_teams_budget(
    openai_client, embedder, user
):
    team = make_team(members=[user])  # the caller's default team: its calls charge it
    budget = budget_set(team=team, period="daily", limit_micros=micros("1"))
    openai_client.embeddings.create(model="embed-standin", input="hello")
    call = recorded_call()  # accounted just after the response has gone
    usage = Usage.objects.get()
    assert usage.team_id == call.team_id == team.pk
    ledger = BudgetLedger.objects.get(budget=budget)
    assert (ledger.spent_micros, ledger.reserved_micros) == (usage.cost_micros, 0)
    # Nothing left in the team's budget: the next one is refused.
    budget_set(team=team, period="daily", limit_micros=ledger.spent_micros)
    with pytest.raises(openai.RateLimitError) as refused:
        openai_client.embeddings.create(model="embed-standin", input="hello")
    assert refused.value.body["code"] == "budget_exceeded"
    assert Usage.objects.count() == 1


def test_encodings_dimensions_and_token_arrays(openai_client, embedder):
    as_base64 = openai_client.embeddings.create(
        model="embed-standin", input="hello", encoding_format="base64", dimensions=16
    )
    packed = as_base64.data[0].embedding
    decoded = struct.unpack("<16f", base64.b64decode(packed))
    as_floats = openai_client.embeddings.create(
        model="embed-standin", input="hello", encoding_format="float", dimensions=16
    )
    assert as_floats.data[0].embedding == pytest.approx(decoded, abs=1e-6)
    tokens = openai_client.embeddings.create(model="embed-standin", input=[[1, 2, 3], [4, 5]])
    assert tokens.usage.prompt_tokens == 5 and len(tokens.data) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", 3]}, "input"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "model": "gpt-standin"}, "model"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(parley, api_key, embedder, body, param):
    response = httpx.post(
        f"{parley}/v1/embeddings",
        json={"model": "embed-standin", **body},
        headers={"Authorization": f"Bearer {api_key.secret}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert Usage.objects.count() == 0


def test_an_embedding_model_cannot_chat(openai_client, embedder):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="embed-standin", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_chat"


def test_budgets_count_and_refuse_embeddings(openai_client, embedder, user):
    budget = budget_set(user=user, period="monthly", limit_micros=micros("1"))
    openai_client.embeddings.create(model="embed-standin", input="word " * 2000)
    call = recorded_call()
    (status,) = budget_statuses(user=user)[None]
    assert status.id == budget.pk
    assert status.spent_micros == call.cost_micros > 0 and status.reserved_micros == 0
    budget_set(user=user, period="monthly", limit_micros=call.cost_micros)  # nothing left
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.embeddings.create(model="embed-standin", input="word " * 2000)
    assert caught.value.body["code"] == "budget_exceeded"
    assert GatewayCall.objects.filter(status="refused").count() == 1


def test_a_provider_fault_is_the_sdks_error(openai_client, catalog):
    StandinModelFactory(
        slug="embed-429", kind="embedding", provider_model="standin-embed-429", max_output_tokens=1
    )
    with pytest.raises(openai.RateLimitError):
        openai_client.embeddings.create(model="embed-429", input="hello")
    assert recorded_call().status == "failed"


MESSAGES = [{"role": "user", "content": "How many tokens is this question?"}]


@pytest.mark.parametrize("slug", ["claude-standin", "gpt-standin"])
def test_count_tokens_for_both_families(anthropic_client, slug):
    counted = anthropic_client.messages.count_tokens(
        model=slug, messages=MESSAGES, system="Be brief."
    )
    longer = anthropic_client.messages.count_tokens(
        model=slug, messages=[{"role": "user", "content": "word " * 400}], system="Be brief."
    )
    assert 0 < counted.input_tokens < longer.input_tokens
    assert GatewayCall.objects.count() == 0  # counting spends nothing


def test_count_tokens_of_an_anthropic_model_is_the_providers(anthropic_client, standin):
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]
    counted = anthropic_client.messages.count_tokens(
        model="claude-standin", messages=MESSAGES, tools=tools
    )
    assert standin.last_request.path == "/v1/messages/count_tokens"
    assert standin.last_request.body["tools"] == tools
    sent = anthropic_client.messages.create(
        model="claude-standin",
        messages=MESSAGES,
        max_tokens=20,
        tools=tools,
        tool_choice={"type": "none"},
    )
    assert counted.input_tokens == sent.usage.input_tokens


def test_count_tokens_refusals(anthropic_client, user, catalog):
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.count_tokens(model="claude-9", messages=MESSAGES)
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.count_tokens(model="claude-standin", messages=[])
    access = ModelAccess.objects.create(user=user)  # model access: the same rule as messages
    access.allowed_models.set([catalog["openai"]])
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client.messages.count_tokens(model="claude-standin", messages=MESSAGES)


def _counts_asked(standin, marker: str) -> int:
    """How many count requests carrying ``marker`` reached the provider."""
    return sum(
        1
        for seen in standin.received
        if seen.path == "/v1/messages/count_tokens" and marker in str(seen.body)
    )


@pytest.mark.parametrize(("slug", "provider_asked"), [("claude-standin", 3), ("gpt-standin", 0)])
def test_count_tokens_is_held_to_the_requests_per_minute_limit(
    anthropic_client, standin, user, request, slug, provider_asked
):
    rate_limit_set(user=user, requests_per_minute=3, tokens_per_minute=None)
    marker = f"count {request.node.callspec.id}"  # this test's requests, at the provider
    messages = [{"role": "user", "content": f"How many tokens is {marker}?"}]
    for remaining in ("2", "1", "0"):
        answer = anthropic_client.messages.with_raw_response.count_tokens(
            model=slug, messages=messages
        )
        assert answer.parse().input_tokens > 0
        assert answer.headers["x-ratelimit-limit-requests"] == "3"
        assert answer.headers["x-ratelimit-remaining-requests"] == remaining

    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.count_tokens(model=slug, messages=messages)
    refused = caught.value.response
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"].startswith("Rate limit reached")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Only the admitted counts reached the provider (an OpenAI-family model's are local).
    assert _counts_asked(standin, marker) == provider_asked
    # One limit for every call: the counts used it up for messages too.
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model=slug, messages=messages, max_tokens=20)
    assert Usage.objects.count() == 0


@pytest.mark.parametrize("slug", ["claude-standin", "gpt-standin"])
def test_count_tokens_holds_no_budget_and_writes_no_usage(anthropic_client, user, slug):
    budget_set(user=user, period="monthly", limit_micros=0)  # not a cent left to hold
    counted = anthropic_client.messages.count_tokens(model=slug, messages=MESSAGES)
    assert counted.input_tokens > 0
    assert not Reservation.objects.exists()
    assert not Usage.objects.exists() and not GatewayCall.objects.exists()
    (status,) = budget_statuses(user=user)[None]
    assert status.spent_micros == 0 and status.reserved_micros == 0


def test_check_providers_embeds_with_an_embedding_model(embedder):
    out = io.StringIO()
    call_command("check_providers", "--model", "embed-standin", stdout=out)
    assert "embed-standin" in out.getvalue() and "(embedding)" in out.getvalue()
