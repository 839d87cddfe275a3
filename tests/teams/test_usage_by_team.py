"""Usage by team: the usage API (a user's calls by team; a team's usage for its admins), the
``usage_report --group-by team`` command and the staff dashboard."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from llm.models import Usage
from project.money import micros
from tests.accounts.factories import UserFactory
from tests.llm.factories import StandinModelFactory
from tests.teams.factories import make_team

pytestmark = pytest.mark.django_db


def spend(user, team, cost: str, tokens: int = 100) -> Usage:
    return Usage.objects.create(
        user=user,
        team=team,
        model=StandinModelFactory(slug="usage-model"),
        input_tokens=tokens,
        output_tokens=tokens,
        cost_micros=micros(cost),
        created_at=timezone.now(),
    )


@pytest.fixture
def data(user, other_user):
    data_team = make_team(admins=[user], members=[other_user], slug="data")
    web = make_team(members=[user], slug="web")
    spend(user, data_team, "1.50")
    spend(other_user, data_team, "2.25")
    spend(user, web, "4.00")
    spend(user, None, "0.10")
    spend(UserFactory(), None, "9.00")
    return data_team, web


def test_a_users_report_shows_their_spend_by_team(auth_client, data):
    report = auth_client.get("/api/v1/usage/").json()
    by_team = {row["team_slug"]: (row["cost"], row["requests"]) for row in report["by_team"]}
    assert by_team == {
        None: ("0.100000", 1),
        "data": ("1.500000", 1),
        "web": ("4.000000", 1),
    }


def test_a_team_admin_sees_the_teams_usage_by_member(auth_client, user, other_user, data):
    data_team, _ = data
    report = auth_client.get("/api/v1/usage/", {"team": "data"}).json()
    assert (report["team"], report["user"], report["total"]["cost"]) == (
        data_team.pk,
        None,
        "3.750000",
    )
    assert {row["email"]: row["cost"] for row in report["by_user"]} == {
        user.email: "1.500000",
        other_user.email: "2.250000",
    }
    by_id = auth_client.get("/api/v1/usage/", {"team": data_team.pk}).json()
    assert by_id["total"] == report["total"]


def test_a_member_or_outsider_cannot_read_a_teams_usage(auth_client, other_client, data):
    refused = other_client.get("/api/v1/usage/", {"team": "data"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "team_admin_required")
    outsider = make_team(members=[UserFactory()], slug="elsewhere")
    hidden = auth_client.get("/api/v1/usage/", {"team": outsider.slug})
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "team_not_found")


def test_staff_read_any_teams_usage(staff_client, data):
    report = staff_client.get("/api/v1/usage/", {"team": "web"}).json()
    assert report["total"]["cost"] == "4.000000"


def test_usage_report_command_groups_by_team(data):
    today = timezone.now().date().isoformat()
    out = StringIO()
    call_command(
        "usage_report",
        "--since",
        today,
        "--until",
        today,
        "--group-by",
        "team",
        "--format",
        "csv",
        stdout=out,
    )
    rows = [line.split(",") for line in out.getvalue().strip().splitlines()]
    header = rows[0]
    assert header[:3] == ["team", "input_tokens", "output_tokens"]
    assert {"cost", "requests", "cache_read_tokens"} <= set(header)
    cost, requests = header.index("cost"), header.index("requests")
    assert {row[0]: (row[cost], row[requests]) for row in rows[1:]} == {
        "-": ("9.100000", "2"),
        "data": ("3.750000", "2"),
        "web": ("4.000000", "1"),
    }


def test_the_dashboard_shows_spend_by_team(client, staff_user, data):
    client.force_login(staff_user)
    response = client.get("/admin/dashboard/")
    html = response.content.decode()
    teams = response.context["teams"]
    assert [(row["slug"], row["cost_micros"]) for row in teams] == [
        ("-", 9_100_000),
        ("web", 4_000_000),
        ("data", 3_750_000),
    ]
    assert 'id="team-spend"' in html and "(data)" in html
