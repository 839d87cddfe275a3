"""What users see of their spend controls through the API."""

import pytest

from accounts.services import api_key_create
from budgets.services import budget_reserve, budget_set
from project.money import micros
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db


def test_each_api_key_shows_its_own_budgets(auth_client, user):
    key = api_key_create(owner=user, name="ci").api_key
    api_key_create(owner=user, name="laptop")
    budget_set(user=user, period="monthly", limit_micros=micros("10"))
    budget_set(api_key=key, period="daily", limit_micros=micros("1"))
    budget_reserve(user=user, api_key=key, amount_micros=micros("0.25"), amount_tokens=10)
    listed = {k["name"]: k for k in auth_client.get("/api/v1/auth/api-keys/").json()["results"]}
    assert listed["laptop"]["budgets"] == []
    [budget] = listed["ci"]["budgets"]
    assert (budget["scope"], budget["period"], budget["reserved_usd"], budget["remaining_usd"]) == (
        "api_key",
        "daily",
        "0.250000",
        "0.750000",
    )
    one = auth_client.get(f"/api/v1/auth/api-keys/{key.pk}/").json()
    assert one["budgets"] == listed["ci"]["budgets"]
    [mine] = auth_client.get("/api/v1/auth/me/").json()["budgets"]
    assert (mine["scope"], mine["reserved_usd"]) == ("user", "0.250000")


def test_listing_keys_reads_budgets_in_a_fixed_number_of_queries(auth_client, user):
    for i in range(2):
        key = api_key_create(owner=user, name=f"k{i}").api_key
        budget_set(api_key=key, period="daily", limit_micros=micros("1"))
    few = queries_for_get(auth_client, "/api/v1/auth/api-keys/")
    for i in range(2, 8):
        key = api_key_create(owner=user, name=f"k{i}").api_key
        budget_set(api_key=key, period="daily", limit_micros=micros("1"))
    assert queries_for_get(auth_client, "/api/v1/auth/api-keys/") == few
