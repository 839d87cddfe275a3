"""Faults while many replies are in flight (a small version of bench/faults.py): the worker
process is SIGKILLed twice mid-stream and restarted, recovery runs, and in the end every job
is finished, every reply is whole and written once, and usage is counted once per reply."""

import os
import signal
import time

import pytest
from django.db.models import Count

from jobs.models import Job
from jobs.services import jobs_reconcile
from llm.models import Message, MessageRole, MessageStatus, Usage
from llm.standin.behaviour import reply_tokens
from tests.jobs.test_concurrent_worker import post_replies
from tests.jobs.worker_process import wait_until, worker_process

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="a worker in another process needs a shared database (PostgreSQL; CI has one)",
    ),
]
REPLY_TOKENS = 30


def expected_reply(content: str) -> str:
    """What the stand-in streams for a one-message conversation (deterministic)."""
    return "".join(reply_tokens("", [{"role": "user", "content": content}], REPLY_TOKENS))


def test_twenty_replies_survive_two_worker_kills(user, standin, settings):
    settings.JOBS_HEARTBEAT_TTL = 1
    settings.JOBS_ENQUEUE_GRACE = 0
    posted = post_replies(user, f"standin-tps15-len{REPLY_TOKENS}", 20)  # 2 s each
    job_ids = [p.job.pk for p in posted]
    env = {"JOBS_HEARTBEAT_TTL": "1", "JOBS_BACKOFF_BASE": "0.05", "JOBS_BACKOFF_MAX": "0.2"}

    def running() -> bool:
        return Job.objects.filter(pk__in=job_ids, status="in_progress").exists()

    def unfinished() -> int:
        return Job.objects.filter(pk__in=job_ids, status__in=["queued", "in_progress"]).count()

    for _ in range(2):  # start a worker, let it get mid-stream, kill it without warning
        with worker_process(standin_url=standin.url, env=env) as worker:
            wait_until(running, timeout=20, what="replies running", worker=worker)
            time.sleep(0.8)
            worker.signal(signal.SIGKILL)
            worker.wait(timeout=10)
        time.sleep(1.2)  # heartbeats of the killed worker's jobs expire
        jobs_reconcile()

    with worker_process(standin_url=standin.url, env=env) as worker:
        deadline = time.monotonic() + 60
        while unfinished():
            assert time.monotonic() < deadline, worker.output()[-3000:]
            jobs_reconcile()  # what rqcron does every JOBS_RECONCILE_INTERVAL
            time.sleep(1)

    jobs = list(Job.objects.filter(pk__in=job_ids))
    assert {j.status for j in jobs} <= {"completed", "failed", "cancelled"}
    assert max(j.attempts for j in jobs) >= 2  # the kills really interrupted replies
    users = Message.objects.filter(conversation__owner=user, role=MessageRole.USER)
    assert users.count() == 20  # no user message lost
    completed = Message.objects.filter(
        pk__in=[p.assistant_message.pk for p in posted], status=MessageStatus.COMPLETED
    )
    assert completed.count() == sum(j.status == "completed" for j in jobs) == 20
    for reply in completed.select_related("conversation"):
        user_text = users.get(conversation=reply.conversation).content
        assert reply.content == expected_reply(user_text)  # not duplicated, not truncated
        assert reply.output_tokens == REPLY_TOKENS
    per_message = (
        Usage.objects.filter(message__in=completed).values("message").annotate(n=Count("id"))
    )
    assert sorted(row["n"] for row in per_message) == [1] * 20  # usage counted exactly once
