"""Usage by day and model over HTTP and from the shell, to the cent, surviving purges."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from llm.models import Usage
from project.money import micros
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, d, hour, tzinfo=UTC)


@pytest.fixture
def usage_rows(user, other_user):
    gpt = StandinModelFactory(slug="m-gpt")
    claude = StandinModelFactory(slug="m-claude", provider="anthropic")
    rows = [
        (user, gpt, 100, 50, "0.001050", day(2, 0), 0, 0),
        (user, gpt, 200, 20, "0.000900", day(2, 23), 128, 0),
        (user, claude, 1000, 500, "0.010500", day(3), 600, 300),  # prompt cache read, written
        (other_user, gpt, 7, 7, "0.000123", day(3), 0, 0),
        (user, claude, 5, 5, "0.000050", day(20), 0, 0),  # outside the range asked below
    ]
    for owner, model, tokens_in, tokens_out, cost, when, read, written in rows:
        Usage.objects.create(
            user=owner,
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=read,
            cache_write_tokens=written,
            cost_micros=micros(cost),
            created_at=when,
        )


def test_usage_by_day_and_model(auth_client, usage_rows):
    body = auth_client.get("/api/v1/usage/?since=2026-11-01&until=2026-11-10").json()
    assert body["total"] == {
        "input_tokens": 1300,
        "output_tokens": 570,
        "cache_read_tokens": 728,
        "cache_write_tokens": 300,
        "cost": "0.012450",
        "requests": 3,
    }
    assert body["by_day"] == [
        {
            "date": "2026-11-02",
            "input_tokens": 300,
            "output_tokens": 70,
            "cache_read_tokens": 128,
            "cache_write_tokens": 0,
            "cost": "0.001950",
            "requests": 2,
        },
        {
            "date": "2026-11-03",
            "input_tokens": 1000,
            "output_tokens": 500,
            "cache_read_tokens": 600,
            "cache_write_tokens": 300,
            "cost": "0.010500",
            "requests": 1,
        },
    ]
    assert [(m["model"], m["cost"]) for m in body["by_model"]] == [
        ("m-claude", "0.010500"),
        ("m-gpt", "0.001950"),
    ]


def test_staff_may_ask_for_anyone_and_others_may_not(
    auth_client, staff_client, other_user, usage_rows
):
    url = f"/api/v1/usage/?since=2026-11-01&until=2026-11-10&user={other_user.pk}"
    assert auth_client.get(url).status_code == 403
    assert staff_client.get(url).json()["total"]["cost"] == "0.000123"


@pytest.mark.parametrize(
    "query",
    ["since=2026-11-10&until=2026-11-01", "since=2020-01-01&until=2026-01-01", "since=yesterday"],
)
def test_bad_ranges(auth_client, query):
    response = auth_client.get(f"/api/v1/usage/?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_defaults_to_this_month(auth_client, user):
    model = StandinModelFactory(slug="now")
    Usage.objects.create(
        user=user,
        model=model,
        input_tokens=1,
        output_tokens=2,
        cost_micros=micros("0.5"),
        created_at=timezone.now(),
    )
    body = auth_client.get("/api/v1/usage/").json()
    assert body["total"]["requests"] == 1
    assert body["until"] == timezone.now().date().isoformat()


class TestUsageReportCommand:
    def run(self, *args) -> str:
        out = io.StringIO()
        call_command(
            "usage_report", "--since", "2026-11-01", "--until", "2026-11-10", *args, stdout=out
        )
        return out.getvalue()

    def test_json_by_user(self, usage_rows, user, other_user):
        rows = json.loads(self.run("--group-by", "user", "--format", "json"))
        expected = [
            {
                "user": other_user.email,
                "input_tokens": 7,
                "output_tokens": 7,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cost": "0.000123",
                "requests": 1,
            },
            {
                "user": user.email,
                "input_tokens": 1300,
                "output_tokens": 570,
                "cache_read_tokens": 728,
                "cache_write_tokens": 300,
                "cost": "0.012450",
                "requests": 3,
            },
        ]
        assert rows == sorted(expected, key=lambda r: r["user"])

    def test_csv_by_model(self, usage_rows):
        rows = list(csv.DictReader(io.StringIO(self.run("--group-by", "model", "--format", "csv"))))
        assert {r["model"]: r["cost"] for r in rows} == {
            "m-claude": "0.010500",
            "m-gpt": "0.002073",
        }
        assert {r["model"]: r["cache_read_tokens"] for r in rows} == {
            "m-claude": "600",
            "m-gpt": "128",
        }

    def test_table_by_day_has_a_total(self, usage_rows):
        table = self.run("--group-by", "day")
        assert "2026-11-02" in table and "2026-11-03" in table
        assert table.strip().splitlines()[-1].split()[:5] == [
            "TOTAL",
            "1307",
            "577",
            "0.012573",
            "4",
        ]

    def test_bad_range_fails(self):
        with pytest.raises(CommandError):
            call_command("usage_report", "--since", "2026-11-10", "--until", "2026-11-01")
