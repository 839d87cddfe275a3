"""Team admins manage their own team through /api/v1/teams/: members, keys charged to the
team, member budgets within the team's. Nothing outside their team is visible or changeable."""

import pytest

from accounts.services import api_key_create
from audit.models import AuditEvent
from budgets.models import Budget
from budgets.services import budget_set
from project.money import micros
from teams.models import Membership
from teams.services import team_api_key_create
from tests.accounts.factories import UserFactory
from tests.queries import queries_for_get
from tests.teams.factories import make_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(user, other_user):
    """``user`` administers it; ``other_user`` is a plain member."""
    return make_team(admins=[user], members=[other_user])


@pytest.fixture
def elsewhere():
    """Another team, with its own admin and member, that ``user`` is not in."""
    return make_team(admins=[UserFactory()], members=[UserFactory()])


def test_a_user_lists_their_teams_with_their_role_and_default(auth_client, other_client, team):
    second = make_team(members=[team.memberships.get(role="admin").user])
    [first_row, second_row] = sorted(
        auth_client.get("/api/v1/teams/").json()["results"], key=lambda t: t["id"]
    )
    assert (first_row["slug"], first_row["role"], first_row["is_default"]) == (
        team.slug,
        "admin",
        True,
    )
    assert (second_row["slug"], second_row["role"], second_row["is_default"]) == (
        second.slug,
        "member",
        False,
    )
    assert first_row["member_count"] == 2
    [theirs] = other_client.get("/api/v1/teams/").json()["results"]
    assert (theirs["slug"], theirs["role"]) == (team.slug, "member")


def test_making_a_team_the_default(auth_client, user, team):
    second = make_team(members=[user])
    response = auth_client.post(f"/api/v1/teams/{second.slug}/default/")
    assert response.status_code == 200 and response.json()["is_default"] is True
    assert Membership.objects.get(user=user, is_default=True).team == second


def test_an_admin_adds_changes_and_removes_members(auth_client, user, team):
    newcomer = UserFactory(email="newcomer@example.com")
    added = auth_client.post(
        f"/api/v1/teams/{team.pk}/members/", {"email": "NEWCOMER@example.com"}, format="json"
    )
    assert added.status_code == 201, added.content
    assert (added.json()["user"], added.json()["role"]) == (newcomer.pk, "member")
    again = auth_client.post(
        f"/api/v1/teams/{team.pk}/members/", {"email": newcomer.email}, format="json"
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_member")
    promoted = auth_client.patch(
        f"/api/v1/teams/{team.pk}/members/{newcomer.pk}/", {"role": "admin"}, format="json"
    )
    assert promoted.json()["role"] == "admin"
    listed = auth_client.get(f"/api/v1/teams/{team.pk}/members/").json()["results"]
    assert {m["email"]: m["role"] for m in listed}["newcomer@example.com"] == "admin"
    assert auth_client.delete(f"/api/v1/teams/{team.pk}/members/{newcomer.pk}/").status_code == 204
    assert not Membership.objects.filter(team=team, user=newcomer).exists()
    logged = list(
        AuditEvent.objects.filter(target_type="teams.team", target_id=str(team.pk))
        .order_by("id")
        .values_list("action", "actor_email")
    )
    assert logged[-3:] == [
        ("team.member_added", user.email),
        ("team.member_role_changed", user.email),
        ("team.member_removed", user.email),
    ]


def test_adding_someone_without_an_account_is_a_clear_400(auth_client, team):
    response = auth_client.post(
        f"/api/v1/teams/{team.pk}/members/", {"email": "nobody@example.com"}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "user_not_found")


def test_the_last_admin_cannot_step_down_or_leave(auth_client, user, team):
    demote = auth_client.patch(
        f"/api/v1/teams/{team.pk}/members/{user.pk}/", {"role": "member"}, format="json"
    )
    assert (demote.status_code, demote.json()["error"]["code"]) == (409, "last_team_admin")
    leave = auth_client.delete(f"/api/v1/teams/{team.pk}/members/{user.pk}/")
    assert leave.status_code == 409


def test_a_plain_member_cannot_manage_the_team(other_client, team, user):
    for method, path, body in [
        ("get", f"/api/v1/teams/{team.pk}/members/", None),
        ("post", f"/api/v1/teams/{team.pk}/members/", {"email": "x@example.com"}),
        ("delete", f"/api/v1/teams/{team.pk}/members/{user.pk}/", None),
        ("get", f"/api/v1/teams/{team.pk}/keys/", None),
        ("post", f"/api/v1/teams/{team.pk}/keys/", {"name": "svc", "kind": "service"}),
        ("get", f"/api/v1/teams/{team.pk}/budgets/", None),
        ("patch", f"/api/v1/teams/{team.pk}/", {"name": "Mine now"}),
    ]:
        response = getattr(other_client, method)(path, body, format="json")
        assert (response.status_code, response.json()["error"]["code"]) == (
            403,
            "team_admin_required",
        ), (method, path)


def test_another_teams_ids_answer_404_for_everything(auth_client, elsewhere):
    their_member = elsewhere.memberships.first().user
    their_key = team_api_key_create(
        team=elsewhere, created_by=their_member, name="theirs", service=True
    ).api_key
    their_budget = budget_set(team=elsewhere, period="monthly", limit_micros=micros("5"))
    for ident in (elsewhere.pk, elsewhere.slug, 999999):
        for method, path, body in [
            ("get", f"/api/v1/teams/{ident}/", None),
            ("patch", f"/api/v1/teams/{ident}/", {"name": "x"}),
            ("post", f"/api/v1/teams/{ident}/default/", None),
            ("get", f"/api/v1/teams/{ident}/members/", None),
            ("post", f"/api/v1/teams/{ident}/members/", {"email": their_member.email}),
            ("patch", f"/api/v1/teams/{ident}/members/{their_member.pk}/", {"role": "member"}),
            ("delete", f"/api/v1/teams/{ident}/members/{their_member.pk}/", None),
            ("get", f"/api/v1/teams/{ident}/keys/", None),
            ("post", f"/api/v1/teams/{ident}/keys/", {"name": "k"}),
            ("delete", f"/api/v1/teams/{ident}/keys/{their_key.pk}/", None),
            ("get", f"/api/v1/teams/{ident}/budgets/", None),
            ("delete", f"/api/v1/teams/{ident}/budgets/{their_budget.pk}/", None),
        ]:
            response = getattr(auth_client, method)(path, body, format="json")
            assert response.status_code == 404, (method, path, response.content)
            assert response.json()["error"]["code"] == "team_not_found"
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
    assert Budget.objects.filter(pk=their_budget.pk).exists()
    assert Membership.objects.filter(team=elsewhere, user=their_member).exists()


def test_ids_from_another_team_inside_my_team_answer_404(auth_client, team, elsewhere):
    their_member = elsewhere.memberships.first().user
    their_key = team_api_key_create(
        team=elsewhere, created_by=their_member, name="theirs", service=True
    ).api_key
    their_budget = budget_set(team=elsewhere, period="monthly", limit_micros=micros("5"))
    assert (
        auth_client.delete(f"/api/v1/teams/{team.pk}/members/{their_member.pk}/").status_code == 404
    )
    assert auth_client.delete(f"/api/v1/teams/{team.pk}/keys/{their_key.pk}/").status_code == 404
    assert (
        auth_client.delete(f"/api/v1/teams/{team.pk}/budgets/{their_budget.pk}/").status_code == 404
    )
    budget = auth_client.post(
        f"/api/v1/teams/{team.pk}/budgets/",
        {"user": their_member.pk, "period": "daily", "limit_usd": "1"},
        format="json",
    )
    assert (budget.status_code, budget.json()["error"]["code"]) == (404, "member_not_found")


@pytest.mark.parametrize(
    "ident", ["99999999999999999999999", "\u00b2", "a b", "%00", "x" * 300, "0", "-1"]
)
def test_ids_that_cannot_exist_answer_404_not_500(auth_client, user, team, ident):
    """Found by schemathesis: a 23-digit id overflowed PostgreSQL's bigint (a 500)."""
    assert auth_client.get(f"/api/v1/teams/{ident}/budgets/").status_code == 404
    for path in ("members", "keys", "budgets"):
        response = auth_client.delete(f"/api/v1/teams/{team.pk}/{path}/{ident}/")
        assert response.status_code == 404, (path, response.content)


def test_keys_charged_to_the_team_listed_created_and_revoked(
    auth_client, other_client, team, user, other_user
):
    own = api_key_create(owner=other_user, name="unscoped").api_key  # not the team's business
    personal = other_client.post(
        f"/api/v1/teams/{team.pk}/keys/", {"name": "laptop"}, format="json"
    )
    assert personal.status_code == 201, personal.content
    assert (personal.json()["kind"], personal.json()["owner"]) == ("personal", other_user.email)
    assert personal.json()["key"].startswith("prl_")
    service = auth_client.post(
        f"/api/v1/teams/{team.pk}/keys/", {"name": "ci", "kind": "service"}, format="json"
    )
    assert service.status_code == 201
    assert (service.json()["kind"], service.json()["owner"], service.json()["created_by"]) == (
        "service",
        None,
        user.email,
    )
    listed = auth_client.get(f"/api/v1/teams/{team.pk}/keys/").json()["results"]
    assert {k["name"] for k in listed} == {"laptop", "ci"}
    assert all("key" not in k for k in listed)
    assert own.pk not in {k["id"] for k in listed}
    revoked = auth_client.delete(f"/api/v1/teams/{team.pk}/keys/{personal.json()['id']}/")
    assert revoked.status_code == 204
    listed = auth_client.get(f"/api/v1/teams/{team.pk}/keys/").json()["results"]
    assert {k["name"]: bool(k["revoked_at"]) for k in listed} == {"laptop": True, "ci": False}


def test_a_member_revokes_only_their_own_key(other_client, auth_client, team):
    service = auth_client.post(
        f"/api/v1/teams/{team.pk}/keys/", {"name": "ci", "kind": "service"}, format="json"
    ).json()
    mine = other_client.post(f"/api/v1/teams/{team.pk}/keys/", {"name": "m"}, format="json").json()
    refused = other_client.delete(f"/api/v1/teams/{team.pk}/keys/{service['id']}/")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "team_admin_required")
    assert other_client.delete(f"/api/v1/teams/{team.pk}/keys/{mine['id']}/").status_code == 204


def test_member_budgets_stay_within_the_teams(auth_client, team, other_user):
    team_budget = budget_set(team=team, period="monthly", limit_micros=micros("100"))
    over = auth_client.post(
        f"/api/v1/teams/{team.pk}/budgets/",
        {"user": other_user.pk, "period": "monthly", "limit_usd": "100.01"},
        format="json",
    )
    assert (over.status_code, over.json()["error"]["code"]) == (400, "exceeds_team_budget")
    uncapped = auth_client.post(
        f"/api/v1/teams/{team.pk}/budgets/",
        {"user": other_user.pk, "period": "monthly", "limit_tokens": 1000},
        format="json",
    )
    assert uncapped.status_code == 400  # the team caps dollars: a member budget must too
    ok = auth_client.post(
        f"/api/v1/teams/{team.pk}/budgets/",
        {"user": other_user.pk, "period": "monthly", "limit_usd": "25"},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    assert (ok.json()["scope"], ok.json()["user"], ok.json()["limit_usd"]) == (
        "team_member",
        other_user.pk,
        "25.000000",
    )
    listed = auth_client.get(f"/api/v1/teams/{team.pk}/budgets/").json()["results"]
    assert [(b["scope"], b["user"]) for b in listed] == [
        ("team", None),
        ("team_member", other_user.pk),
    ]
    staff_only = auth_client.delete(f"/api/v1/teams/{team.pk}/budgets/{team_budget.pk}/")
    assert (staff_only.status_code, staff_only.json()["error"]["code"]) == (403, "staff_only")
    assert (
        auth_client.delete(f"/api/v1/teams/{team.pk}/budgets/{ok.json()['id']}/").status_code == 204
    )


def test_managing_a_team_needs_a_jwt_not_an_api_key(api_client, user, team):
    secret = api_key_create(owner=user, name="k").secret
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api_client.get(f"/api/v1/teams/{team.pk}/members/")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "jwt_required")


def test_list_endpoints_cost_a_fixed_number_of_queries(auth_client, user, team):
    def grow(n):
        for _ in range(n):
            member = UserFactory()
            Membership.objects.create(team=team, user=member)
            team_api_key_create(team=team, created_by=member, name="p", service=False)
            team_api_key_create(team=team, created_by=user, name="s", service=True)
            budget_set(team=team, user=member, period="daily", limit_micros=micros("1"))
            make_team(members=[user])

    grow(1)
    urls = [
        "/api/v1/teams/",
        f"/api/v1/teams/{team.pk}/members/",
        f"/api/v1/teams/{team.pk}/keys/",
        f"/api/v1/teams/{team.pk}/budgets/",
    ]
    few = [queries_for_get(auth_client, url) for url in urls]
    grow(6)
    assert [queries_for_get(auth_client, url) for url in urls] == few
