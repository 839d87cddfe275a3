"""The self-service page through Django's test client: keys (secret shown once, revoke, another
person's key a 404), CSRF, team admins' section, and a page cost that does not grow with rows."""

import re

import pytest
from django.test import Client

from accounts.models import ApiKey
from accounts.services import api_key_create
from conftest import PASSWORD
from teams.models import Membership
from teams.services import membership_add, team_api_key_create, team_create
from tests.accounts.factories import UserFactory
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def test_the_page_needs_a_signed_in_person(client):
    response = client.get("/account/")
    assert response.status_code == 302 and response["Location"].startswith("/account/login/")


def test_a_new_key_is_shown_once_and_works(browser, user, api_client):
    created = browser.post("/account/keys/", {"name": "laptop"})
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    secret = re.search(r"prl_[0-9a-f]{8}_[A-Za-z0-9_\-]+", created.text).group(0)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api_client.get("/api/v1/auth/me/").json()["email"] == user.email
    again = browser.get("/account/")
    assert "laptop" in again.text and secret not in again.text


def test_a_key_with_no_name_is_refused_with_the_reason(browser):
    response = browser.post("/account/keys/", {"name": ""})
    assert response.status_code == 400 and "This field is required" in response.text
    assert not ApiKey.objects.exists()


def test_revoking_ends_the_key_and_another_persons_key_is_a_404(browser, user, other_user):
    mine = api_key_create(owner=user, name="mine").api_key
    theirs = api_key_create(owner=other_user, name="theirs").api_key
    assert browser.post(f"/account/keys/{theirs.pk}/revoke/").status_code == 404
    response = browser.post(f"/account/keys/{mine.pk}/revoke/", follow=True)
    assert "is revoked" in response.text
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None


def test_forms_without_the_csrf_token_are_refused(user):
    client = Client(enforce_csrf_checks=True)
    client.login(username=user.email, password=PASSWORD)
    assert client.post("/account/keys/", {"name": "x"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_a_team_admin_manages_their_team_and_only_theirs(browser, user, other_user):
    data = team_create(name="Data", slug="data")
    other = team_create(name="Other", slug="other")
    membership_add(team=data, user=user, role="admin")
    membership_add(team=other, user=other_user, role="admin")
    newcomer = UserFactory()
    service_key = team_api_key_create(team=data, created_by=user, name="etl", service=True)

    page = browser.get("/account/")
    assert "Data: you are a team admin" in page.text and "Other" not in page.text
    assert "team service key" in page.text

    browser.post(
        "/account/teams/data/members/", {"data-email": newcomer.email, "data-role": "member"}
    )
    assert Membership.objects.filter(team=data, user=newcomer).exists()
    browser.post(f"/account/teams/data/members/{newcomer.pk}/remove/")
    assert not Membership.objects.filter(team=data, user=newcomer).exists()
    browser.post(f"/account/teams/data/keys/{service_key.api_key.pk}/revoke/")
    assert ApiKey.objects.get(pk=service_key.api_key.pk).revoked_at is not None

    # Another team's ids answer as if they did not exist.
    assert browser.post(f"/account/teams/other/members/{other_user.pk}/remove/").status_code == 404
    assert (
        browser.post("/account/teams/other/members/", {"other-email": newcomer.email}).status_code
        == 404
    )
    assert Membership.objects.filter(team=other, user=other_user).exists()


def test_a_plain_member_sees_their_teams_but_no_admin_section(browser, user):
    data = team_create(name="Data", slug="data")
    membership_add(team=data, user=user)
    page = browser.get("/account/")
    assert "Data" in page.text and "team admin" not in page.text
    assert browser.post(f"/account/teams/data/members/{user.pk}/remove/").status_code == 404


def test_the_page_costs_the_same_number_of_queries_however_many_keys_and_members(browser, user):
    team = team_create(name="Data", slug="data")
    membership_add(team=team, user=user, role="admin")
    api_key_create(owner=user, name="one")
    baseline = queries_for_get(browser, "/account/")
    for n in range(5):
        api_key_create(owner=user, name=f"key {n}")
        membership_add(team=team, user=UserFactory())
        team_api_key_create(team=team, created_by=user, name=f"svc {n}", service=True)
    assert queries_for_get(browser, "/account/") == baseline
