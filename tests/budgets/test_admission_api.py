"""Spend controls end to end: concurrent POSTs over real HTTP (uvicorn) against real
PostgreSQL and Redis, replies written by a real RQ worker through the stand-in provider."""

import os
import subprocess
import sys
import threading

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from accounts.services import api_key_create
from budgets.models import BudgetLedger, Reservation, ReservationStatus
from budgets.periods import period_start
from budgets.services import budget_set, rate_limit_set
from jobs.models import Job
from jobs.runner import run_job
from llm.models import Usage
from project.money import micros
from tests.accounts.factories import UserFactory
from tests.budgets.test_reservations import on_postgresql
from tests.live import asgi_server, free_port, wait_until_ready, work_until_idle
from tests.llm.factories import ConversationFactory, StandinModelFactory
from tests.load import bearer, messages_post_together, status_counts, worst_case_micros

CONTENT = "Hello, Parley"


@pytest.fixture(autouse=True)
def _standin(standin):
    return standin


def _assert_settled_and_reconciled(budget, limit: int) -> None:
    ledger = BudgetLedger.objects.get(budget=budget, period_start=period_start(budget.period))
    assert ledger.reserved_micros == 0 and ledger.reserved_tokens == 0
    assert ledger.spent_micros <= limit
    usage = Usage.objects.filter(user=budget.user or budget.api_key.owner).aggregate(
        cost=Sum("cost_micros")
    )
    assert ledger.spent_micros == usage["cost"]  # to the millionth, so to the cent
    assert not Reservation.objects.filter(status=ReservationStatus.HELD).exists()


@on_postgresql
@pytest.mark.django_db(transaction=True)
class TestR4:
    def test_100_concurrent_posts_against_a_budget_for_exactly_10(self):
        user = UserFactory()
        key = api_key_create(owner=user, name="load").secret
        model = StandinModelFactory()
        conversations = [ConversationFactory(owner=user, model=model) for _ in range(100)]
        worst = worst_case_micros(conversations[0], CONTENT)
        limit = 10 * worst
        budget = budget_set(user=user, period="daily", limit_micros=limit)
        with asgi_server() as base_url:
            responses = messages_post_together(
                [(base_url, str(c.pk), bearer(key)) for c in conversations], content=CONTENT
            )
        assert status_counts(responses) == {202: 10, (429, "budget_exceeded"): 90}
        refusal = next(r for r in responses if r.status_code == 429).json()["error"]
        assert refusal["details"]["budget"]["id"] == budget.pk
        assert micros(refusal["details"]["budget"]["remaining_usd"]) < worst
        assert refusal["details"]["budget"]["resets_at"]
        work_until_idle(timeout=120)
        assert Usage.objects.count() == 10
        _assert_settled_and_reconciled(budget, limit)

    def test_two_api_keys_of_one_user_share_the_user_budget(self):
        user = UserFactory()
        keys = [api_key_create(owner=user, name=f"k{i}") for i in range(2)]
        model = StandinModelFactory()
        conversations = [ConversationFactory(owner=user, model=model) for _ in range(100)]
        worst = worst_case_micros(conversations[0], CONTENT)
        for issued in keys:  # each key alone could pay for all 100
            budget_set(api_key=issued.api_key, period="daily", limit_micros=100 * worst)
        budget = budget_set(user=user, period="monthly", limit_micros=10 * worst)
        with asgi_server() as base_url:
            responses = messages_post_together(
                [
                    (base_url, str(c.pk), bearer(keys[i % 2].secret))
                    for i, c in enumerate(conversations)
                ],
                content=CONTENT,
            )
        assert status_counts(responses) == {202: 10, (429, "budget_exceeded"): 90}
        work_until_idle(timeout=120)
        _assert_settled_and_reconciled(budget, 10 * worst)
        used_keys = set(Usage.objects.values_list("api_key_id", flat=True))
        assert used_keys <= {issued.api_key.pk for issued in keys}  # never null: by key

    def test_posts_racing_settles_never_overspend(self):
        user = UserFactory()
        key = api_key_create(owner=user, name="load").secret
        model = StandinModelFactory()
        conversations = [ConversationFactory(owner=user, model=model) for _ in range(60)]
        limit = 10 * worst_case_micros(conversations[0], CONTENT)
        budget = budget_set(user=user, period="daily", limit_micros=limit)
        with asgi_server() as base_url:
            requests = [(base_url, str(c.pk), bearer(key)) for c in conversations]
            first = messages_post_together(requests[:10], content=CONTENT)
            assert status_counts(first) == {202: 10}
            # The job runner writes and settles those ten (each costs less than its worst
            # case) while fifty more POSTs race for what the settles free. (run_job is what an
            # RQ worker calls; an RQ worker itself installs signal handlers, main thread only.)
            jobs = list(Job.objects.values_list("pk", flat=True))
            worker = threading.Thread(target=lambda: [run_job(str(pk)) for pk in jobs])
            worker.start()
            second = messages_post_together(requests[10:], content=CONTENT)
            worker.join()
        codes = status_counts(second)
        assert set(codes) <= {202, (429, "budget_exceeded")}
        work_until_idle(timeout=120)
        _assert_settled_and_reconciled(budget, limit)
        assert Usage.objects.count() == 10 + codes.get(202, 0)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_per_key_rpm_holds_across_two_web_processes(standin):
    """Two uvicorn processes, 120 POSTs split between them, one key limited to 60/minute."""
    user = UserFactory()
    issued = api_key_create(owner=user, name="load")
    rate_limit_set(api_key=issued.api_key, requests_per_minute=60, tokens_per_minute=None)
    model = StandinModelFactory()
    conversations = [ConversationFactory(owner=user, model=model) for _ in range(120)]
    db = connection.settings_dict
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "STANDIN_BASE_URL": standin.url,
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        for server, port in zip(servers, ports, strict=True):
            wait_until_ready(
                server,
                lambda port=port: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1),
                what="uvicorn",
            )
        responses = messages_post_together(
            [
                (f"http://127.0.0.1:{ports[i % 2]}", str(c.pk), bearer(issued.secret))
                for i, c in enumerate(conversations)
            ],
            content=CONTENT,
        )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)
    assert status_counts(responses) == {202: 60, (429, "rate_limit_exceeded"): 60}
    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 429]
    assert {r.headers["x-ratelimit-limit-requests"] for r in accepted} == {"60"}
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in accepted) == list(
        range(60)
    )
    for response in refused:
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
