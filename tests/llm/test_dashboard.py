"""The staff dashboard: what it shows, who may see it, and that it stays within a fixed
number of queries as data grows."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from llm.models import Message, Usage
from llm.selectors import usage_by_day
from project.money import micros
from tests.accounts.factories import UserFactory
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.queries import queries_for_get

pytestmark = pytest.mark.django_db


def make_data(users: int) -> None:
    now = timezone.now()
    for index in range(users):
        owner = UserFactory()
        model = StandinModelFactory(slug=f"dash-{index}")
        Usage.objects.create(
            user=owner,
            model=model,
            input_tokens=100,
            output_tokens=50,
            cost_micros=micros("1.25"),
            created_at=now,
        )
        Job.objects.create(
            kind="llm.completion", owner=owner, status=["queued", "failed", "completed"][index % 3]
        )
        conversation = ConversationFactory(owner=owner, model=model)
        Message.objects.create(
            conversation=conversation,
            position=1,
            role="assistant",
            status="completed",
            model=model,
            latency_ms=100 + index,
            completed_at=now,
        )


def test_shows_spend_jobs_latency_spenders_and_queues(client, staff_user):
    now = timezone.now()
    model = StandinModelFactory(slug="fast-model")
    spender = UserFactory(email="big@example.com")
    Usage.objects.create(
        user=spender,
        model=model,
        input_tokens=1000,
        output_tokens=234,
        cost_micros=micros("12.345"),
        created_at=now,
    )
    conversation = ConversationFactory(owner=spender, model=model)
    for position, latency in enumerate(range(100, 1001, 100), start=1):
        Message.objects.create(
            conversation=conversation,
            position=position,
            role="assistant",
            status="completed",
            model=model,
            latency_ms=latency,
            completed_at=now,
        )
    Job.objects.create(kind="llm.completion", owner=spender, status="failed")
    Job.objects.create(kind="llm.completion", owner=spender, status="queued", queue="completions")

    client.force_login(staff_user)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "<polyline" in html
    assert "1234 tokens" in html and "$12.35" in html  # the 30-day totals
    context = response.context
    latency = next(row for row in context["latency"] if row["model"] == "fast-model")
    assert (latency["count"], latency["p50"], latency["p95"]) == (10, 500, 1000)
    assert context["spenders"][0]["email"] == "big@example.com"
    assert "big@example.com" in html and "12.35" in html
    statuses = {row["status"]: row["all"] for row in context["jobs"]}
    assert statuses["failed"] == 1 and statuses["queued"] == 1
    assert context["queues"][0]["queue"] == "completions" and context["queues"][0]["queued"] == 1


def test_linked_from_the_admin_index(client, staff_user):
    client.force_login(staff_user)
    assert "/admin/dashboard/" in client.get("/admin/").content.decode()


def test_refused_to_non_staff_and_anonymous(client, user):
    assert client.get("/admin/dashboard/").status_code == 302
    client.force_login(user)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_query_count_is_fixed(client, staff_user):
    client.force_login(staff_user)

    make_data(2)
    few = queries_for_get(client, "/admin/dashboard/")
    make_data(20)
    assert queries_for_get(client, "/admin/dashboard/") == few


def test_daily_usage_fills_missing_days(user):
    model = StandinModelFactory(slug="daily")
    today = date(2026, 11, 20)
    for day, tokens in ((today, 10), (today, 5), (today - timedelta(days=2), 7)):
        Usage.objects.create(
            user=user,
            model=model,
            input_tokens=tokens,
            output_tokens=0,
            cost_micros=micros("0.10"),
            created_at=timezone.make_aware(timezone.datetime(day.year, day.month, day.day, 12)),
        )
    days = usage_by_day(days=4, today=today)
    assert [(d.day.day, d.tokens, d.cost_micros) for d in days] == [
        (17, 0, 0),
        (18, 7, 100_000),
        (19, 0, 0),
        (20, 15, 200_000),
    ]
