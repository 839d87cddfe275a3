"""Conversation search (``GET /api/v1/conversations/?q=``) over 100,000 messages on PostgreSQL.

Bulk-creates conversations of synthetic messages (words drawn from a Zipf-like vocabulary, so
some terms are rare and some common), half of them owned by the searching user, then times
the whole request in-process (middleware, authentication, the view, the ranked full-text
query, the snippets of the page) for a rare, a medium and a common term. Prints p50/p99 per
term, the number of matching conversations, the SQL queries per request, and EXPLAIN ANALYZE
of the ranking query, which must show the GIN index (``llm_message_content_search``) in use.
Then drops the index and times the same searches without it, for comparison.

Uses its own test database (``test_<name>`` of DATABASE_URL's name, created and dropped).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_search \\
    REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/search.py --messages 100000
"""

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.test")

VOCABULARY = 20_000
WORDS_PER_MESSAGE = 30
MESSAGES_PER_CONVERSATION = 50


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def word(rank: int) -> str:
    return f"term{rank}"


def populate(total_messages: int, searcher, others: list) -> None:
    from llm.models import Conversation, Message
    from tests.llm.factories import StandinModelFactory

    model = StandinModelFactory(slug="bench-search")
    rng = random.Random(42)
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]  # Zipf: term0 is the commonest
    cumulative = list(itertools.accumulate(weights))
    ranks = list(range(VOCABULARY))
    conversations = total_messages // MESSAGES_PER_CONVERSATION
    owners = [searcher if n % 2 == 0 else others[n % len(others)] for n in range(conversations)]
    created = Conversation.objects.bulk_create(
        [
            Conversation(owner=owner, model=model, title=f"conversation {n}")
            for n, owner in enumerate(owners)
        ],
        batch_size=2000,
    )
    batch = []
    for conversation in created:
        for position in range(1, MESSAGES_PER_CONVERSATION + 1):
            text = " ".join(
                word(rank)
                for rank in rng.choices(ranks, cum_weights=cumulative, k=WORDS_PER_MESSAGE)
            )
            batch.append(
                Message(
                    conversation=conversation,
                    position=position,
                    role="user" if position % 2 else "assistant",
                    content=text,
                )
            )
            if len(batch) >= 5000:
                Message.objects.bulk_create(batch)
                batch = []
    Message.objects.bulk_create(batch)


def time_searches(client, terms: dict[str, str], runs: int) -> dict[str, dict]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = {}
    for label, term in terms.items():
        url = f"/api/v1/conversations/?q={term}"
        client.get(url)  # warm
        durations = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url)
            durations.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(url).json()
        results[label] = {
            "term": term,
            "count": body["count"],
            "p50": statistics.median(durations),
            "p99": pct(durations, 0.99),
            "queries": len(ctx),
            "snippet": body["results"][0]["match"]["snippet"] if body["results"] else "",
        }
    return results


def print_results(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"{'term':<28} {'conversations':>13} {'p50 ms':>8} {'p99 ms':>8} {'queries':>8}")
    for label, row in results.items():
        name = f"{label} ({row['term']})"
        print(
            f"{name:<28} {row['count']:>13} {row['p50']:>8.1f} {row['p99']:>8.1f} "
            f"{row['queries']:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per term")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from rest_framework.test import APIClient

    from llm.models import Message
    from tests.accounts.factories import UserFactory

    if connection.vendor != "postgresql":
        sys.exit("Full-text search is PostgreSQL's: point DATABASE_URL at PostgreSQL.")
    setup_test_environment()
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
        "user": "1000000/minute",
        "auth": "1000000/minute",
    }
    settings.STANDIN_BASE_URL = "http://127.0.0.1:9"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        searcher = UserFactory()
        others = [UserFactory() for _ in range(9)]
        started = time.perf_counter()
        populate(args.messages, searcher, others)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE llm_message; ANALYZE llm_conversation")
        print(
            f"{Message.objects.count():,} messages in "
            f"{args.messages // MESSAGES_PER_CONVERSATION:,} conversations (half the "
            f"searcher's), created and indexed in {time.perf_counter() - started:.1f} s"
        )
        client = APIClient()
        client.force_authenticate(searcher)
        terms = {"rare": word(15_000), "medium": word(300), "common": word(3)}
        print_results(
            "With the GIN index (GET /api/v1/conversations/?q=<term>, whole request):",
            time_searches(client, terms, args.runs),
        )
        print("\nEXPLAIN ANALYZE of the ranking query over matching messages (medium term):")
        with CaptureQueriesContext(connection) as ctx:
            client.get(f"/api/v1/conversations/?q={terms['medium']}")
        ranking = next(q["sql"] for q in ctx.captured_queries if "GROUP BY" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN ANALYZE " + ranking)
            print("\n".join(row[0] for row in cursor.fetchall()))

        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX llm_message_content_search")
        print_results(
            "Without the index, for comparison:",
            time_searches(client, terms, max(3, args.runs // 10)),
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
