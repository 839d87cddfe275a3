"""Which team a call is charged to, and the team's budgets, member budgets, rate limits and
model access applied to it — through the conversation API, as a client sees them."""

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create
from budgets.models import BudgetLedger, Reservation
from budgets.services import budget_set, rate_limit_set
from jobs.models import Job
from llm.models import Message, ModelAccess
from project.money import micros
from teams.models import Membership
from teams.services import member_budget_set, team_api_key_create
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.teams.factories import make_team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _standin(standin):
    return standin


@pytest.fixture
def model():
    return StandinModelFactory()


def post(client, conversation, team: str | None = None):
    headers = {"HTTP_X_PARLEY_TEAM": team} if team is not None else {}
    return client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/",
        {"content": "Hello"},
        format="json",
        **headers,
    )


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def charged_team_id(response) -> int | None:
    job = Job.objects.get(pk=response.json()["job"]["id"])
    reservation = Reservation.objects.filter(reference=f"job:{job.pk}").first()
    assert reservation is None or reservation.team_id == job.payload.get("team_id")
    return job.payload.get("team_id")


def test_a_jwt_call_is_charged_to_the_default_team_or_the_one_it_names(auth_client, user, model):
    first = make_team(members=[user])
    second = make_team(members=[user])
    conversation = ConversationFactory(owner=user, model=model)
    budget = budget_set(team=first, period="daily", limit_micros=micros("100"))
    response = post(auth_client, conversation)
    assert response.status_code == 202, response.content
    assert charged_team_id(response) == first.pk
    assert BudgetLedger.objects.get(budget=budget).reserved_micros > 0
    work = ConversationFactory(owner=user, model=model)
    assert charged_team_id(post(auth_client, work, team=second.slug)) == second.pk
    other = ConversationFactory(owner=user, model=model)
    assert charged_team_id(post(auth_client, other, team=str(first.pk))) == first.pk


def test_no_team_at_all_when_the_user_is_in_none(auth_client, user, model):
    response = post(auth_client, ConversationFactory(owner=user, model=model))
    assert response.status_code == 202 and charged_team_id(response) is None


def test_naming_a_team_you_are_not_in_is_a_404_and_stores_nothing(auth_client, user, model):
    theirs = make_team(members=[])
    conversation = ConversationFactory(owner=user, model=model)
    for name in (theirs.slug, str(theirs.pk), "no-such-team"):
        response = post(auth_client, conversation, team=name)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "team_not_found")
    assert not Message.objects.exists() and not Job.objects.exists()


def test_the_team_budget_refuses_what_it_cannot_cover(
    auth_client, other_client, user, other_user, model
):
    team = make_team(members=[user, other_user])
    budget_set(team=team, period="daily", limit_micros=micros("0.000001"))
    budget_set(user=user, period="daily", limit_micros=micros("100"))  # the user could pay
    for client, owner in ((auth_client, user), (other_client, other_user)):
        response = post(client, ConversationFactory(owner=owner, model=model))
        assert (response.status_code, response.json()["error"]["code"]) == (429, "budget_exceeded")
        details = response.json()["error"]["details"]["budget"]
        assert details["scope"] == "team"
        assert "team's daily budget" in response.json()["error"]["message"]
    # The same user, charging no team (a team of their own that has no cap), goes through.
    uncapped = make_team(members=[user])
    response = post(auth_client, ConversationFactory(owner=user, model=model), team=uncapped.slug)
    assert response.status_code == 202


def test_a_member_budget_caps_one_member_within_the_team(
    auth_client, other_client, user, other_user, model
):
    team = make_team(members=[user, other_user])
    budget_set(team=team, period="daily", limit_micros=micros("100"))
    member_budget_set(
        membership=Membership.objects.get(team=team, user=user),
        period="daily",
        limit_micros=micros("0.000001"),
    )
    refused = post(auth_client, ConversationFactory(owner=user, model=model))
    assert refused.json()["error"]["details"]["budget"]["scope"] == "team_member"
    assert post(other_client, ConversationFactory(owner=other_user, model=model)).status_code == 202
    # Outside the team the member budget does not apply.
    solo = make_team(members=[user])
    response = post(auth_client, ConversationFactory(owner=user, model=model), team=solo.slug)
    assert response.status_code == 202


def test_team_model_access_narrows_what_members_may_use(auth_client, user, model):
    allowed = StandinModelFactory()
    team = make_team(members=[user])
    access = ModelAccess.objects.create(team=team)
    access.allowed_models.set([allowed])
    refused = post(auth_client, ConversationFactory(owner=user, model=model))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "model_not_allowed")
    assert refused.json()["error"]["details"]["restricted_by"] == "team"
    assert post(auth_client, ConversationFactory(owner=user, model=allowed)).status_code == 202
    listed = {m["slug"] for m in auth_client.get("/api/v1/models/").json()["results"]}
    assert allowed.slug in listed and model.slug not in listed
    other = make_team(members=[user])  # the same user, another team: no restriction
    listed = {
        m["slug"]
        for m in auth_client.get("/api/v1/models/", HTTP_X_PARLEY_TEAM=other.slug).json()["results"]
    }
    assert model.slug in listed


def test_a_team_rate_limit_counts_every_members_calls(
    auth_client, other_client, user, other_user, model
):
    team = make_team(members=[user, other_user])
    rate_limit_set(team=team, requests_per_minute=2, tokens_per_minute=None)
    assert post(auth_client, ConversationFactory(owner=user, model=model)).status_code == 202
    assert post(other_client, ConversationFactory(owner=other_user, model=model)).status_code == 202
    third = post(auth_client, ConversationFactory(owner=user, model=model))
    assert (third.status_code, third.json()["error"]["code"]) == (429, "rate_limit_exceeded")


def test_a_personal_key_scoped_to_a_team_always_charges_it(user, model):
    default = make_team(members=[user])
    scoped = make_team(members=[user])
    client = key_client(
        team_api_key_create(team=scoped, created_by=user, name="k", service=False).secret
    )
    response = post(client, ConversationFactory(owner=user, model=model))
    assert charged_team_id(response) == scoped.pk
    same = post(client, ConversationFactory(owner=user, model=model), team=scoped.slug)
    assert charged_team_id(same) == scoped.pk
    mismatch = post(client, ConversationFactory(owner=user, model=model), team=default.slug)
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (403, "team_mismatch")


def test_an_unscoped_personal_key_charges_like_a_jwt(user, model):
    team = make_team(members=[user])
    client = key_client(api_key_create(owner=user, name="k").secret)
    assert charged_team_id(post(client, ConversationFactory(owner=user, model=model))) == team.pk


def test_a_team_service_key_charges_its_team_and_its_key_budget(user, model):
    team = make_team(admins=[user])
    issued = team_api_key_create(team=team, created_by=user, name="ci", service=True)
    key_budget = budget_set(api_key=issued.api_key, period="daily", limit_micros=micros("0.000001"))
    client = key_client(issued.secret)
    service_user = team.service_user
    refused = post(client, ConversationFactory(owner=service_user, model=model))
    assert refused.json()["error"]["details"]["budget"]["id"] == key_budget.pk
    key_budget.delete()
    response = post(client, ConversationFactory(owner=service_user, model=model))
    assert response.status_code == 202 and charged_team_id(response) == team.pk
