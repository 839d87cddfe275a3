"""Staff see and manage every team in the admin, through the same services as the API."""

import pytest

from accounts.models import ApiKey
from teams.models import Membership, Team
from teams.services import team_api_key_create
from tests.accounts.factories import UserFactory
from tests.teams.factories import make_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def test_staff_see_every_team_with_its_members_and_keys(staff):
    admin = UserFactory(email="lead@example.com")
    team = make_team(admins=[admin], members=[UserFactory(email="dev@example.com")])
    team_api_key_create(team=team, created_by=admin, name="ci-key", service=True)
    listing = staff.get("/admin/teams/team/").content.decode()
    assert team.name in listing
    page = staff.get(f"/admin/teams/team/{team.pk}/change/").content.decode()
    assert "ci-key" in page
    assert "dev@example.com" in staff.get("/admin/teams/membership/").content.decode()


def test_staff_create_a_team_with_its_service_account_and_a_first_member(staff):
    member = UserFactory()
    response = staff.post(
        "/admin/teams/team/add/",
        {
            "name": "Data",
            "slug": "data",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": str(member.pk),
            "memberships-0-role": "admin",
            "budgets-TOTAL_FORMS": "1",
            "budgets-INITIAL_FORMS": "0",
            "budgets-0-period": "monthly",
            "budgets-0-limit_usd": "2000",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    team = Team.objects.get(slug="data")
    assert team.service_user.has_usable_password() is False
    membership = Membership.objects.get(team=team)
    assert (membership.user, membership.role, membership.is_default) == (member, "admin", True)
    [budget] = team.budgets.all()
    assert (budget.period, budget.limit_micros, budget.user) == ("monthly", 2_000_000_000, None)


def test_deleting_a_team_revokes_its_service_keys(staff):
    admin = UserFactory()
    team = make_team(admins=[admin])
    key = team_api_key_create(team=team, created_by=admin, name="ci", service=True).api_key
    response = staff.post(f"/admin/teams/team/{team.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Team.objects.filter(pk=team.pk).exists()
    key = ApiKey.objects.get(pk=key.pk)
    assert key.revoked_at is not None and not key.owner.is_active
