"""Recovery runs where completions cannot starve it: RQ's cron scheduler puts reconcile_jobs on
the ``maintenance`` queue, which a worker of its own serves, as scripts/run and the compose
file start them. Real processes (``rqcron jobs.cron``, ``rqworker maintenance``), PostgreSQL
and Redis; the ``default`` and ``completions`` queues hold a backlog nobody is serving."""

import contextlib
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from rq import Queue

from jobs.models import Job, JobStatus
from project.redis import redis_client
from tests.jobs.worker_process import ROOT, wait_until, worker_database_url
from tests.live import rq_cron_registered, rq_worker_registered, wait_until_ready

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="processes of their own need a shared database (PostgreSQL; CI has one)",
    ),
]


@contextlib.contextmanager
def manage(*args: str):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
        "DATABASE_URL": worker_database_url(),
        "JOBS_RECONCILE_INTERVAL": "1",
        "JOBS_ENQUEUE_GRACE": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def test_a_lost_job_is_recovered_while_the_completion_queues_are_backed_up(user):
    for name in ("default", "completions"):  # a backlog a busy worker would take minutes over
        backlog = Queue(name, connection=redis_client())
        for _ in range(50):
            backlog.enqueue("time.sleep", 5)
    lost = Job.objects.create(kind="test.echo", owner=user, payload={}, queue="completions")
    Job.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    with (
        manage("rqcron", "jobs.cron") as cron,
        manage("rqworker", "--worker-class", "rq.worker.SimpleWorker", "maintenance") as worker,
    ):
        wait_until_ready(cron, rq_cron_registered, what="rqcron")
        wait_until_ready(worker, lambda: rq_worker_registered(worker.pid), what="the worker")
        wait_until(
            lambda: Job.objects.get(pk=lost.pk).enqueued_at is not None,
            timeout=30,
            what="reconcile_jobs to deliver the lost job",
        )

    lost.refresh_from_db()
    assert lost.status == JobStatus.QUEUED
    assert str(lost.pk) in Queue("completions", connection=redis_client()).job_ids
