"""Offboarding: a member removed from a team loses that team's access at once; a user
deactivated by staff loses sessions and personal keys; team service keys they created stay
with the team and keep working."""

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create
from conftest import PASSWORD
from jobs.models import Job
from project.errors import Conflict
from teams.models import Membership
from teams.services import membership_remove, team_api_key_create
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.teams.factories import make_team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _standin(standin):
    return standin


def client_with(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


def ask(client, owner, team: str | None = None):
    conversation = ConversationFactory(owner=owner, model=StandinModelFactory(slug="offboard"))
    headers = {"HTTP_X_PARLEY_TEAM": team} if team else {}
    return client.post(
        f"/api/v1/conversations/{conversation.pk}/messages/",
        {"content": "Hi"},
        format="json",
        **headers,
    )


def charged_to(response) -> int | None:
    assert response.status_code == 202, response.content
    return Job.objects.get(pk=response.json()["job"]["id"]).payload.get("team_id")


@pytest.fixture
def leaver(other_user):
    return other_user


@pytest.fixture
def team(user, leaver):
    """``user`` administers it; ``leaver`` is an admin too, who made a service key."""
    return make_team(admins=[user, leaver])


def test_a_removed_member_loses_the_team_at_once(auth_client, team, leaver, other_client):
    later = make_team(members=[leaver])  # joined after: not their default
    scoped = team_api_key_create(team=team, created_by=leaver, name="laptop", service=False)
    unscoped = api_key_create(owner=leaver, name="own")
    service = team_api_key_create(team=team, created_by=leaver, name="ci", service=True)
    assert charged_to(ask(other_client, leaver)) == team.pk
    assert charged_to(ask(client_with(scoped.secret), leaver)) == team.pk

    removed = auth_client.delete(f"/api/v1/teams/{team.pk}/members/{leaver.pk}/")
    assert removed.status_code == 204

    named = ask(other_client, leaver, team=team.slug)
    assert (named.status_code, named.json()["error"]["code"]) == (404, "team_not_found")
    assert charged_to(ask(other_client, leaver)) == later.pk  # their default moved on
    assert ask(client_with(scoped.secret), leaver).status_code == 401  # revoked
    assert charged_to(ask(client_with(unscoped.secret), leaver)) == later.pk  # still theirs
    # The service key they made belongs to the team: it keeps working, charged to the team.
    assert charged_to(ask(client_with(service.secret), team.service_user)) == team.pk
    listed = auth_client.get(f"/api/v1/teams/{team.pk}/keys/").json()["results"]
    assert {k["name"]: (k["kind"], bool(k["revoked_at"])) for k in listed} == {
        "laptop": ("personal", True),
        "ci": ("service", False),
    }


def test_a_scoped_key_stops_charging_a_team_its_owner_left_by_any_path(team, leaver):
    scoped = team_api_key_create(team=team, created_by=leaver, name="laptop", service=False)
    # A membership row removed without the service (a cascade, a shell): the call-time check
    # still refuses to charge the team.
    Membership.objects.filter(team=team, user=leaver).delete()
    refused = ask(client_with(scoped.secret), leaver)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        403,
        "team_membership_ended",
    )


def test_staff_deactivation_ends_sessions_and_personal_keys_not_team_keys(
    client, staff_user, team, leaver
):
    login = APIClient().post("/api/v1/auth/token/", {"email": leaver.email, "password": PASSWORD})
    refresh = login.json()["refresh"]
    scoped = team_api_key_create(team=team, created_by=leaver, name="laptop", service=False)
    own = api_key_create(owner=leaver, name="own")
    service = team_api_key_create(team=team, created_by=leaver, name="ci", service=True)

    client.force_login(staff_user)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "deactivate", "_selected_action": [leaver.pk]},
        follow=True,
    )
    assert response.status_code == 200

    again = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": refresh})
    assert again.status_code == 401
    assert ask(client_with(scoped.secret), leaver).status_code == 401
    assert ask(client_with(own.secret), leaver).status_code == 401
    assert charged_to(ask(client_with(service.secret), team.service_user)) == team.pk


def test_removing_the_last_admin_through_the_service_is_refused_but_staff_may(team, user, leaver):
    membership_remove(membership=Membership.objects.get(team=team, user=leaver))
    with pytest.raises(Conflict):
        membership_remove(membership=Membership.objects.get(team=team, user=user))
    membership_remove(
        membership=Membership.objects.get(team=team, user=user), keep_last_admin=False
    )
    assert not team.memberships.exists()
