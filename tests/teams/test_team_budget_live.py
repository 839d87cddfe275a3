"""A team budget under load, end to end: concurrent calls over real HTTP (uvicorn) from many
members, replies written by a real RQ worker through the stand-in provider, and the team's
spend in the ledger equal to its Usage rows; plus a team service key through the OpenAI SDK."""

import httpx
import openai
import pytest
from django.db.models import Sum

from accounts.api.tokens import RefreshToken
from budgets.models import BudgetLedger, Reservation, ReservationStatus
from budgets.periods import period_start
from budgets.services import budget_set
from llm.models import GatewayCall, Usage
from project.money import micros
from teams.services import team_api_key_create
from tests.accounts.factories import UserFactory
from tests.live import asgi_server, work_until_idle
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.load import bearer, messages_post_together, status_counts, worst_case_micros
from tests.teams.factories import make_team

CONTENT = "Hello, team"


@pytest.mark.django_db(transaction=True)
def test_100_calls_from_10_members_against_a_team_budget_for_exactly_10(standin):
    members = [UserFactory() for _ in range(10)]
    team = make_team(admins=members[:1], members=members[1:])
    make_team(members=members[:5])  # half of them have another team too: they name this one
    model = StandinModelFactory()
    conversations = [ConversationFactory(owner=m, model=model) for m in members for _ in range(10)]
    worst = worst_case_micros(conversations[0], CONTENT)
    budget = budget_set(team=team, period="daily", limit_micros=10 * worst)
    for member in members:  # each member alone could pay for all their calls
        budget_set(user=member, period="daily", limit_micros=100 * worst)
    credentials = {}
    for i, member in enumerate(members):
        if i % 2:  # a personal key scoped to the team
            secret = team_api_key_create(
                team=team, created_by=member, name="load", service=False
            ).secret
            credentials[member.pk] = bearer(secret)
        else:  # a JWT naming the team by its slug
            access = str(RefreshToken.for_user(member).access_token)
            credentials[member.pk] = bearer(access) | {"X-Parley-Team": team.slug}
    with asgi_server() as base_url:
        responses = messages_post_together(
            [(base_url, str(c.pk), credentials[c.owner_id]) for c in conversations],
            content=CONTENT,
            timeout=120,
        )
    assert status_counts(responses) == {202: 10, (429, "budget_exceeded"): 90}
    refusal = next(r for r in responses if r.status_code == 429).json()["error"]
    assert (refusal["details"]["budget"]["id"], refusal["details"]["budget"]["scope"]) == (
        budget.pk,
        "team",
    )
    work_until_idle(timeout=180)
    ledger = BudgetLedger.objects.get(budget=budget, period_start=period_start("daily"))
    assert ledger.reserved_micros == 0 and ledger.reserved_tokens == 0
    assert 0 < ledger.spent_micros <= 10 * worst
    usage = Usage.objects.filter(team=team)
    assert usage.count() == 10 == Usage.objects.count()
    assert ledger.spent_micros == usage.aggregate(cost=Sum("cost_micros"))["cost"]
    assert not Reservation.objects.filter(status=ReservationStatus.HELD).exists()


@pytest.mark.django_db(transaction=True)
def test_a_team_service_key_through_the_openai_sdk_is_accounted_to_the_team(standin):
    admin = UserFactory()
    team = make_team(admins=[admin])
    model = StandinModelFactory(slug="gpt-team")
    budget = budget_set(team=team, period="monthly", limit_micros=micros("10"))
    secret = team_api_key_create(team=team, created_by=admin, name="ci", service=True).secret
    with asgi_server() as base_url:
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0) as client:
            reply = client.chat.completions.create(
                model=model.slug, messages=[{"role": "user", "content": "Hi"}]
            )
            assert reply.choices[0].message.content
            with pytest.raises(openai.PermissionDeniedError) as refused:
                client.chat.completions.create(
                    model=model.slug,
                    messages=[{"role": "user", "content": "Hi"}],
                    extra_headers={"X-Parley-Team": "some-other-team"},
                )
            assert refused.value.body["code"] == "team_mismatch"
    [call, _] = sorted(GatewayCall.objects.all(), key=lambda c: c.created_at)
    assert call.team_id == team.pk and call.user_id == team.service_user_id
    usage = Usage.objects.get()
    assert usage.team_id == team.pk and usage.cost_micros > 0
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.spent_micros == usage.cost_micros and ledger.reserved_micros == 0


@pytest.mark.django_db(transaction=True)
def test_a_stored_response_and_its_title_are_charged_to_the_named_team(standin, settings):
    member = UserFactory()
    make_team(members=[member])  # their default team
    named = make_team(members=[member])
    model = StandinModelFactory(slug="gpt-stored")
    settings.LLM_TITLE_MODEL = StandinModelFactory(slug="title-small").slug
    budget = budget_set(team=named, period="monthly", limit_micros=micros("10"))
    access = str(RefreshToken.for_user(member).access_token)
    with asgi_server() as base_url:
        with openai.OpenAI(
            base_url=f"{base_url}/v1",
            api_key=access,
            max_retries=0,
            default_headers={"X-Parley-Team": named.slug},
        ) as client:
            queued = client.responses.create(model=model.slug, input="Hi", background=True)
            assert queued.status == "queued"
        # A conversation started untitled gets a title job: charged to the reply's team too.
        headers = {"Authorization": f"Bearer {access}", "X-Parley-Team": str(named.pk)}
        with httpx.Client(base_url=base_url, headers=headers) as http:
            conversation = http.post("/api/v1/conversations/", json={"model": model.slug}).json()
            posted = http.post(
                f"/api/v1/conversations/{conversation['id']}/messages/", json={"content": "Yo"}
            )
            assert posted.status_code == 202
    work_until_idle(timeout=60)
    usage = list(Usage.objects.order_by("created_at").values_list("model__slug", "team_id"))
    assert usage == [
        ("gpt-stored", named.pk),
        ("gpt-stored", named.pk),
        ("title-small", named.pk),
    ]
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.reserved_micros == 0
    assert ledger.spent_micros == Usage.objects.aggregate(cost=Sum("cost_micros"))["cost"]
    [call] = GatewayCall.objects.all()
    assert call.team_id == named.pk
