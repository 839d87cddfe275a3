"""What admission (model access, rate limits, budget reservation) adds to posting a message.

Runs ``POST /api/v1/conversations/{id}/messages/`` in-process through the whole Django/DRF
stack (middleware, API-key authentication, the view, ``message_post``, enqueue on commit) against
the real PostgreSQL and Redis, for two users authenticated by API key, alternating request by
request so drift on a shared machine hits both alike:

* **on** — the user has a daily USD budget and a monthly token budget, the key a daily USD
  budget, and both have RPM and TPM limits (high enough never to refuse): three ledger rows
  reserved per POST and one Redis script;
* **off** — no budgets and no limits: admission still looks them up and finds none.

Prints p50/p90/p99 per mode, the p50 difference, and the SQL queries per POST in each mode.
Uses its own test database (``test_<name>`` of DATABASE_URL's name, created and dropped) and
flushes REDIS_URL's database first.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_admission \\
    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/admission.py --posts 400
"""

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.test")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=400, help="POSTs per mode")
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from rest_framework.test import APIClient

    setup_test_environment()
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
        "user": "1000000/minute",
        "auth": "1000000/minute",
    }
    settings.STANDIN_BASE_URL = "http://127.0.0.1:9"  # makes stand-in models callable; never called
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from accounts.models import User
        from accounts.services import api_key_create
        from budgets.services import budget_set, rate_limit_set
        from llm.models import Conversation, LLMModel

        model = LLMModel.objects.create(
            slug="bench-model",
            display_name="bench",
            provider="openai",
            provider_model="standin-chat",
            is_standin=True,
            context_window=16_384,
            max_output_tokens=1_024,
            input_price_per_mtok=Decimal("3"),
            output_price_per_mtok=Decimal("15"),
        )
        total = args.posts + args.warmup
        clients, conversations, api_keys = {}, {}, {}
        for mode in ("on", "off"):
            user = User.objects.create_user(email=f"{mode}@bench.local", password="x" * 20)
            issued = api_key_create(owner=user, name=mode)
            if mode == "on":
                budget_set(user=user, period="daily", limit_micros=10**12)
                budget_set(user=user, period="monthly", limit_tokens=10**12)
                budget_set(api_key=issued.api_key, period="daily", limit_micros=10**12)
                rate_limit_set(user=user, requests_per_minute=10**6, tokens_per_minute=10**12)
                rate_limit_set(
                    api_key=issued.api_key, requests_per_minute=10**6, tokens_per_minute=10**12
                )
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
            clients[mode] = client
            api_keys[mode] = issued.api_key
            conversations[mode] = [
                Conversation.objects.create(owner=user, model=model, title=f"{mode} {i}")
                for i in range(total)
            ]

        timings: dict[str, list[float]] = {"on": [], "off": []}
        queries: dict[str, int] = {}
        for i in range(total):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for mode in order:
                url = f"/api/v1/conversations/{conversations[mode][i].pk}/messages/"
                reset_queries()  # the query log is capped; start each count from empty
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    response = clients[mode].post(url, {"content": "Hello there"}, format="json")
                    elapsed = time.perf_counter() - start
                assert response.status_code == 202, response.content
                if i >= args.warmup:
                    timings[mode].append(elapsed * 1000)
                queries[mode] = len(captured)

        print(f"POST .../messages/ through the full stack, {args.posts} per mode, alternating")
        print(f"{'mode':<6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'queries':>9}")
        for mode in ("off", "on"):
            values = timings[mode]
            print(
                f"{mode:<6}{pct(values, 0.5):>9.2f}{pct(values, 0.9):>9.2f}{pct(values, 0.99):>9.2f}"
                f"{statistics.fmean(values):>9.2f}{queries[mode]:>9}"
            )
        added = pct(timings["on"], 0.5) - pct(timings["off"], 0.5)
        print(f"admission with budgets and limits on adds {added:.2f} ms at p50")
        print(f"load average during the run: {os.getloadavg()[0]:.1f}")

        # The admission step alone (the service, no HTTP), alternating likewise.
        from django.db import transaction

        from llm.admission import admission_release, admission_reserve

        service: dict[str, list[float]] = {"on": [], "off": []}
        service_queries: dict[str, int] = {}
        for i in range(total):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                conversation = conversations[mode][i]
                api_key = api_keys[mode]
                reset_queries()
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    with transaction.atomic():
                        admission = admission_reserve(
                            user=conversation.owner,
                            api_key=api_key,
                            model=model,
                            input_tokens_estimate=20,
                            max_tokens=1024,
                            reference=f"bench:{i}",
                        )
                    elapsed = time.perf_counter() - start
                admission_release(reservation=admission.reservation)
                if i >= args.warmup:
                    service[mode].append(elapsed * 1000)
                service_queries[mode] = len(captured)
        print("admission_reserve alone (in a transaction, as in message_post)")
        for mode in ("off", "on"):
            values = service[mode]
            print(
                f"{mode:<6}{pct(values, 0.5):>9.2f}{pct(values, 0.9):>9.2f}{pct(values, 0.99):>9.2f}"
                f"{statistics.fmean(values):>9.2f}{service_queries[mode]:>9}"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        redis.Redis.from_url(settings.REDIS_URL).flushdb()


if __name__ == "__main__":
    main()
