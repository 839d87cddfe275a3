"""jobs.worker.ThreadPoolWorker in a real worker process: many replies at once from the real
SDKs against the stand-in provider, with real PostgreSQL and Redis, RQ's registries kept
truthful, cancel, failures, warm shutdown and the database connection bound."""

import os
import signal
import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from rq import Queue
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from jobs.models import Job, JobStatus
from jobs.services import job_cancel
from llm.models import Message, MessageStatus, Usage
from llm.providers import estimate_tokens
from llm.services import message_post
from llm.streams import reply_text_so_far
from tests.jobs.worker_process import APP_NAME, wait_until, worker_process
from tests.live import STARTUP_HANG_GUARD
from tests.llm.factories import ConversationFactory, StandinModelFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="a worker in another process needs a shared database (PostgreSQL; CI has one)",
    ),
]


def post_replies(user, provider_model: str, count: int, *, word: str = "hello"):
    """``count`` conversations on a stand-in model, each with one reply queued."""
    model = StandinModelFactory(slug=f"test-{provider_model}", provider_model=provider_model)
    posted = []
    for index in range(count):
        conversation = ConversationFactory(owner=user, model=model)
        posted.append(message_post(conversation=conversation, content=f"{word} {index}"))
    return posted


def statuses(posted) -> list[str]:
    ids = [p.job.pk for p in posted]
    return list(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def all_finished(posted) -> bool:
    return all(s in ("completed", "failed", "cancelled") for s in statuses(posted))


def rq_connection():
    return redis.Redis.from_url(settings.REDIS_URL)


def finished_ids(queue: str = "completions") -> list[str]:
    return FinishedJobRegistry(queue, connection=rq_connection()).get_job_ids()


def started_count(queue: str = "completions") -> int:
    return StartedJobRegistry(queue, connection=rq_connection()).count


def test_slow_replies_run_at_the_same_time_and_rq_registries_say_so(user, standin):
    posted = post_replies(user, "standin-tps10-len20", 12)  # 2 s each
    with worker_process(standin_url=standin.url, env={"JOBS_WORKER_CONCURRENCY": "50"}) as worker:
        wait_until(lambda: started_count() == 12, timeout=20, what="12 running", worker=worker)
        assert Queue("completions", connection=rq_connection()).count == 0
        wait_until(lambda: all_finished(posted), timeout=30, what="all replies", worker=worker)
        # A job's row turns terminal inside the job; RQ moves the job from Started to
        # Finished right after it returns, in the same thread. Leaving the block kills the
        # worker, so wait for RQ's bookkeeping first (a busy machine can put the kill between
        # the two: the race this test once lost).
        wait_until(
            lambda: set(finished_ids()) == {str(p.job.pk) for p in posted},
            timeout=10,
            what="RQ to record all 12 as finished",
            worker=worker,
        )
        assert started_count() == 0

    jobs = list(Job.objects.filter(pk__in=[p.job.pk for p in posted]))
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}, jobs[0].last_error
    # Every reply had started before the first one finished: they ran together, not in turn.
    assert max(j.started_at for j in jobs) < min(j.finished_at for j in jobs)
    replies = Message.objects.filter(pk__in=[p.assistant_message.pk for p in posted])
    assert all(r.status == MessageStatus.COMPLETED and r.output_tokens == 20 for r in replies)


def test_a_process_at_its_bound_leaves_the_rest_on_the_queue(user, standin):
    posted = post_replies(user, "standin-tps10-len15", 6)
    with worker_process(standin_url=standin.url, env={"JOBS_WORKER_CONCURRENCY": "2"}) as worker:
        wait_until(lambda: started_count() == 2, timeout=20, what="2 running", worker=worker)
        # Another process could take these four: this one does not hold them.
        assert Queue("completions", connection=rq_connection()).count == 4
        peak = 0
        while not all_finished(posted):
            peak = max(peak, started_count())
            time.sleep(0.05)
    assert peak == 2
    assert set(statuses(posted)) == {JobStatus.COMPLETED}


def test_cancel_one_reply_of_many_in_flight(user, standin):
    posted = post_replies(user, "standin-tps20-len60", 6)  # 3 s each
    victim = posted[2]
    with worker_process(standin_url=standin.url) as worker:
        wait_until(lambda: started_count() == 6, timeout=20, what="6 running", worker=worker)
        wait_until(
            lambda: reply_text_so_far(str(victim.assistant_message.pk)) != "",
            timeout=30,
            what="the victim's first text",
            worker=worker,
        )
        job_cancel(job=Job.objects.get(pk=victim.job.pk))
        # Its thread stops and RQ records the execution as over; the others keep going.
        wait_until(lambda: started_count() == 5, timeout=5, what="the cancelled one to stop")
        wait_until(lambda: all_finished(posted), timeout=30, what="all replies", worker=worker)

    cancelled = Message.objects.get(pk=victim.assistant_message.pk)
    assert cancelled.status == MessageStatus.CANCELLED
    others = Message.objects.filter(
        pk__in=[p.assistant_message.pk for p in posted if p is not victim]
    )
    assert {m.status for m in others} == {MessageStatus.COMPLETED}
    full_length = min(len(m.content) for m in others)
    assert 0 < len(cancelled.content) < full_length  # the partial text is kept
    # Charged the estimate of what was produced by the cancel (one policy, llm.lifecycle).
    usage = Usage.objects.get(message=cancelled)
    assert 0 < usage.output_tokens <= estimate_tokens(cancelled.content)


def test_a_failing_reply_does_not_disturb_its_neighbours(user, standin):
    good = post_replies(user, "standin-tps20-len20", 4)
    refused = post_replies(user, "standin-400", 1, word="refused")
    unauthorised = post_replies(user, "standin-401", 1, word="unauthorised")
    with worker_process(standin_url=standin.url, burst=True) as worker:
        assert worker.wait(timeout=40) == 0, worker.output()[-3000:]

    assert set(statuses(good)) == {JobStatus.COMPLETED}
    assert statuses(refused + unauthorised) == [JobStatus.FAILED, JobStatus.FAILED]
    for posted in good:
        reply = Message.objects.get(pk=posted.assistant_message.pk)
        assert reply.status == MessageStatus.COMPLETED and reply.output_tokens == 20
    assert started_count() == 0


def test_sigterm_finishes_what_it_can_and_hands_back_the_rest(user, standin):
    quick = post_replies(user, "standin-tps10-len20", 2, word="quick")  # 2 s
    long = post_replies(user, "standin-tps10-len300", 3, word="long")  # 30 s
    env = {"JOBS_SHUTDOWN_GRACE": "4"}
    with worker_process(standin_url=standin.url, env=env) as worker:
        wait_until(lambda: started_count() == 5, timeout=20, what="5 running", worker=worker)
        worker.signal(signal.SIGTERM)
        # The grace (4 s), then the hand-back; the bound only catches a worker that hangs.
        assert worker.wait(timeout=STARTUP_HANG_GUARD) == 0, worker.output()[-3000:]

    # The quick replies finished within the grace; the 30-second ones were not waited for but
    # handed back, unfinished, with the interrupted attempt not counted.
    assert set(statuses(quick)) == {JobStatus.COMPLETED}
    handed_back = list(Job.objects.filter(pk__in=[p.job.pk for p in long]))
    assert {j.status for j in handed_back} == {JobStatus.QUEUED}
    assert {j.attempts for j in handed_back} == {0}  # the interrupted attempt does not count
    on_queue = set(Queue("completions", connection=rq_connection()).job_ids)
    assert on_queue == {str(j.pk) for j in handed_back}  # back on RQ for the next worker
    assert started_count() == 0
    replies = Message.objects.filter(pk__in=[p.assistant_message.pk for p in long])
    assert {m.status for m in replies} == {MessageStatus.QUEUED}
    for job in handed_back:  # don't leave 30-second replies to other tests
        job_cancel(job=job)


def _worker_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [connection.settings_dict["NAME"], APP_NAME],
        )
        return cursor.fetchone()[0]


def test_200_replies_in_flight_hold_no_more_connections_than_the_pool(user, standin):
    pool_size = 4
    # 30 s each: the worker claims 200 jobs through a pool of 4, which can take over 10 s on
    # a busy machine; every reply must still be running when the last one starts.
    posted = post_replies(user, "standin-tps10-len300", 200)
    env = {"JOBS_WORKER_CONCURRENCY": "200", "DB_POOL_MAX_SIZE": str(pool_size)}
    peak_connections = peak_running = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_connections
        try:
            while not stop.is_set():
                peak_connections = max(peak_connections, _worker_connections())
                time.sleep(0.02)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    with worker_process(standin_url=standin.url, env=env) as worker:
        sampler.start()
        try:
            deadline = time.monotonic() + 90
            while not all_finished(posted):
                peak_running = max(peak_running, started_count())
                assert time.monotonic() < deadline, worker.output()[-3000:]
                time.sleep(0.05)
        finally:
            stop.set()
            sampler.join()

    assert peak_running == 200
    assert set(statuses(posted)) == {JobStatus.COMPLETED}
    assert 1 <= peak_connections <= pool_size + 1  # +1: the worker's main thread
