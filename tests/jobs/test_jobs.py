"""Durable jobs over a real Redis and real RQ workers: enqueue on commit, run, retry, fail,
cancel, recover, idempotency, and the jobs API."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from rq import Queue

from jobs.models import Job, JobStatus
from jobs.services import job_cancel, job_create, job_retry, job_transition, jobs_reconcile
from project.errors import IdempotencyKeyReused, InvalidTransition
from tests.jobs.kinds import terminal_hook_calls
from tests.live import work_until_idle
from tests.queries import queries_for_get

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def create(user, kind="test.echo", **payload):
    with transaction.atomic():
        job, created = job_create(kind=kind, owner=user, payload=payload)
    assert created
    return job


def rq_queue(name="default"):
    return Queue(name, connection=redis.Redis.from_url(settings.REDIS_URL))


class TestLifecycle:
    def test_enqueued_only_when_the_transaction_commits(self, user):
        with transaction.atomic():
            job, _ = job_create(kind="test.echo", owner=user, payload={"say": "hi"})
            assert rq_queue().count == 0  # nothing on the queue before commit
        assert rq_queue().job_ids == [str(job.pk)]  # the RQ job id is the Job's UUID
        job.refresh_from_db()
        assert job.enqueued_at is not None

    def test_rolled_back_job_is_never_enqueued(self, user):
        with pytest.raises(RuntimeError), transaction.atomic():
            job_create(kind="test.echo", owner=user, payload={})
            raise RuntimeError("abort")
        assert rq_queue().count == 0
        assert not Job.objects.exists()

    def test_worker_runs_it_to_completion(self, user, redis_clean):
        job = create(user, say="hello")
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED
        assert job.attempts == 1
        assert job.started_at and job.finished_at and job.started_at <= job.finished_at
        assert redis_clean.get(f"test:echo:{job.pk}") == b"hello"
        assert terminal_hook_calls == [(str(job.pk), "completed")]

    def test_transient_error_is_retried_with_backoff(self, user):
        job = create(user, kind="test.flaky", retry_after=0.3)
        started = time.monotonic()
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED
        assert job.attempts == 2
        assert time.monotonic() - started >= 0.3  # Retry-After honoured
        assert job.last_error == ""

    def test_permanent_error_fails_at_once(self, user):
        job = create(user, kind="test.broken")
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert job.attempts == 1
        assert job.last_error == "bad input: no such thing"
        assert terminal_hook_calls == [(str(job.pk), "failed")]

    def test_crash_fails_without_leaking_internals(self, user):
        job = create(user, kind="test.crash")
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert job.last_error == "Internal error while running the job."

    def test_attempts_are_bounded(self, user, settings):
        settings.JOBS_MAX_ATTEMPTS = 1
        job = create(user, kind="test.flaky")
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert "gave up after 1 attempts" in job.last_error

    def test_transitions_are_checked(self, user):
        job = create(user)
        with pytest.raises(InvalidTransition):
            job_transition(job=job, to=JobStatus.COMPLETED)  # queued cannot complete directly
        stale = Job.objects.get(pk=job.pk)
        job_transition(job=job, to=JobStatus.IN_PROGRESS)
        with pytest.raises(InvalidTransition):  # the other copy thought it was still queued
            job_transition(job=stale, to=JobStatus.IN_PROGRESS)
        job_transition(job=job, to=JobStatus.COMPLETED)
        with pytest.raises(InvalidTransition):
            job_transition(job=job, to=JobStatus.QUEUED)


class TestCancelAndRetry:
    def test_cancel_a_queued_job_and_it_never_runs(self, user, redis_clean):
        job = create(user, say="never")
        job_cancel(job=job)
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert job.attempts == 0
        assert redis_clean.get(f"test:echo:{job.pk}") is None

    def test_cancel_a_running_job(self, user, redis_clean):
        job = create(user, kind="test.slow", seconds=10)

        def cancel_when_started():
            deadline = time.monotonic() + 10
            while not redis_clean.get(f"test:started:{job.pk}") and time.monotonic() < deadline:
                time.sleep(0.01)
            job_cancel(job=Job.objects.get(pk=job.pk))

        canceller = threading.Thread(target=cancel_when_started)
        canceller.start()
        started = time.monotonic()
        work_until_idle()
        canceller.join()
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert time.monotonic() - started < 5  # stopped, not run to its end
        assert redis_clean.get(f"test:stopped:{job.pk}") == b"1"
        assert terminal_hook_calls == [(str(job.pk), "cancelled")]

    def test_retry_failed_job(self, user):
        job = create(user, kind="test.flaky")
        job_transition(job=job, to=JobStatus.IN_PROGRESS, attempts=1)
        job_transition(job=job, to=JobStatus.FAILED, last_error="boom")
        job_retry(job=job)
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED
        assert job.attempts == 2

    def test_finished_jobs_cannot_be_cancelled_or_retried(self, user):
        job = create(user)
        work_until_idle()
        job.refresh_from_db()
        with pytest.raises(InvalidTransition):
            job_cancel(job=job)
        with pytest.raises(InvalidTransition):
            job_retry(job=job)


class TestRecovery:
    def test_redis_down_at_create_then_reconciled(self, user, settings, redis_clean):
        good_queues = settings.RQ_QUEUES
        settings.RQ_QUEUES = {
            name: {**config, "URL": "redis://127.0.0.1:1/0"} for name, config in good_queues.items()
        }
        job = create(user, say="late")  # commit succeeds although Redis is unreachable
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED and job.enqueued_at is None

        settings.RQ_QUEUES = good_queues
        settings.JOBS_ENQUEUE_GRACE = 0
        report = jobs_reconcile()
        assert report.requeued == [str(job.pk)]
        assert jobs_reconcile().requeued == []  # now RQ holds it: nothing to do twice
        work_until_idle()
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED
        assert redis_clean.get(f"test:echo:{job.pk}") == b"late"

    def test_reconcile_command_dry_run(self, user, settings, redis_clean):
        job = create(user)
        redis_clean.flushdb()  # the queue entry is lost
        settings.JOBS_ENQUEUE_GRACE = 0
        from io import StringIO

        out = StringIO()
        call_command("reconcile_jobs", "--dry-run", stdout=out)
        assert "would have re-enqueued 1" in out.getvalue()
        assert rq_queue().count == 0
        call_command("reconcile_jobs", stdout=StringIO())
        assert rq_queue().job_ids == [str(job.pk)]

    @pytest.mark.skipif(
        "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="a worker in another process needs a shared database (PostgreSQL; CI has one)",
    )
    def test_worker_killed_mid_job_is_recovered(self, user, settings, redis_clean):
        settings.JOBS_HEARTBEAT_TTL = 1
        job = create(user, kind="test.slow", seconds=30)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings.test",
            "JOBS_HEARTBEAT_TTL": "1",
            "DATABASE_URL": _test_database_url(),
        }
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_WITH_TEST_KINDS],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not redis_clean.get(f"test:started:{job.pk}"):
                assert time.monotonic() < deadline, "worker never started the job"
                time.sleep(0.05)
            job.refresh_from_db()
            assert job.status == JobStatus.IN_PROGRESS
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        time.sleep(1.5)  # the heartbeat expires
        report = jobs_reconcile()
        assert report.recovered == [str(job.pk)]
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED
        assert "stopped" in job.last_error
        job_cancel(job=job)  # don't leave a 30-second job for other tests


WORKER_WITH_TEST_KINDS = """
import django
django.setup()
import tests.jobs.kinds
from django.core.management import call_command
call_command("rqworker", "default", worker_class="rq.worker.SimpleWorker")
"""


def _test_database_url() -> str:
    url = os.environ["DATABASE_URL"]
    name = connection.settings_dict["NAME"]
    return url.rsplit("/", 1)[0] + "/" + name


class TestIdempotency:
    def test_same_key_same_request_returns_the_job(self, user):
        with transaction.atomic():
            first, created = job_create(
                kind="test.echo",
                owner=user,
                payload={},
                idempotency_key="k",
                request_fingerprint="a",
            )
        with transaction.atomic():
            again, created_again = job_create(
                kind="test.echo",
                owner=user,
                payload={},
                idempotency_key="k",
                request_fingerprint="a",
            )
        assert created and not created_again and again.pk == first.pk
        assert Job.objects.count() == 1

    def test_same_key_other_request_is_refused(self, user, other_user):
        with transaction.atomic():
            job_create(
                kind="test.echo",
                owner=user,
                payload={},
                idempotency_key="k",
                request_fingerprint="a",
            )
        with pytest.raises(IdempotencyKeyReused) as error:
            job_create(
                kind="test.echo",
                owner=user,
                payload={},
                idempotency_key="k",
                request_fingerprint="b",
            )
        assert error.value.code == "idempotency_key_reused"
        with transaction.atomic():  # keys are per owner
            _, created = job_create(
                kind="test.echo",
                owner=other_user,
                payload={},
                idempotency_key="k",
                request_fingerprint="b",
            )
        assert created


class TestJobsApi:
    def test_list_detail_and_filters(self, auth_client, user):
        echo = create(user)
        broken = create(user, kind="test.broken")
        work_until_idle()
        body = auth_client.get("/api/v1/jobs/").json()
        assert [j["id"] for j in body["results"]] == [str(broken.pk), str(echo.pk)]
        assert set(body["results"][0]) >= {
            "id",
            "kind",
            "status",
            "attempts",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        }
        failed = auth_client.get("/api/v1/jobs/?status=failed").json()["results"]
        assert [j["id"] for j in failed] == [str(broken.pk)]
        assert failed[0]["error"] == "bad input: no such thing"
        assert auth_client.get("/api/v1/jobs/?kind=test.echo").json()["count"] == 1
        assert auth_client.get("/api/v1/jobs/?status=bogus").status_code == 400
        assert auth_client.get(f"/api/v1/jobs/{echo.pk}/").json()["status"] == "completed"

    def test_cancel_and_retry_endpoints(self, auth_client, user):
        job = create(user)
        response = auth_client.post(f"/api/v1/jobs/{job.pk}/cancel/")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        again = auth_client.post(f"/api/v1/jobs/{job.pk}/cancel/")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "not_cancellable"
        assert auth_client.post(f"/api/v1/jobs/{job.pk}/retry/").json()["status"] == "queued"
        work_until_idle()
        assert auth_client.post(f"/api/v1/jobs/{job.pk}/retry/").status_code == 409

    def test_other_users_jobs_are_404_and_staff_see_all(
        self, other_client, staff_client, auth_client, user
    ):
        job = create(user)
        assert other_client.get(f"/api/v1/jobs/{job.pk}/").status_code == 404
        assert other_client.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 404
        assert other_client.post(f"/api/v1/jobs/{job.pk}/retry/").status_code == 404
        assert other_client.get("/api/v1/jobs/").json()["count"] == 0
        assert staff_client.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
        assert staff_client.get("/api/v1/jobs/").json()["count"] == 1
        assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED

    def test_list_queries_do_not_grow(self, auth_client, user):
        for _ in range(2):
            create(user)
        few = queries_for_get(auth_client, "/api/v1/jobs/")
        for _ in range(20):
            create(user)
        assert queries_for_get(auth_client, "/api/v1/jobs/") == few

    def test_admin_actions_use_the_services(self, client, staff_user, user):
        queued, finished = create(user), create(user, kind="test.broken")
        work_until_idle_for = [finished]  # noqa: F841 - documents intent
        job_cancel(job=queued)
        client.force_login(staff_user)
        assert client.get("/admin/jobs/job/").status_code == 200
        client.post("/admin/jobs/job/", {"action": "retry", "_selected_action": [queued.pk]})
        assert Job.objects.get(pk=queued.pk).status == JobStatus.QUEUED
        client.post("/admin/jobs/job/", {"action": "cancel", "_selected_action": [queued.pk]})
        assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED
