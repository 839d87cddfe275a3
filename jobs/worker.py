"""An RQ worker that runs many jobs at once, in threads of one process.

A completion spends almost all its life waiting on the provider's socket, so a process that
runs one at a time (rq's SimpleWorker) wastes ~140 MiB per waiting reply. ``ThreadPoolWorker``
keeps RQ as the queue and its registries truthful (each job is in StartedJobRegistry while it
runs, then in Finished/FailedJobRegistry), and runs up to JOBS_WORKER_CONCURRENCY jobs at once:

    python manage.py rqworker --worker-class jobs.worker.ThreadPoolWorker completions

* A process at its bound does not take more jobs from Redis, so other processes get them.
* Threads cannot be killed: RQ's death penalty (SIGALRM) does nothing here. Jobs stop
  themselves through ``jobs.runner.Watchdog`` (cancel, JOBS_TIMEOUT, shutdown) and the
  provider clients' connect/read timeouts.
* One thread (jobs.runner's watch) keeps every running job's heartbeats, Parley's and RQ's,
  in one Redis pipeline per beat.
* SIGTERM (warm shutdown): take no more jobs, let running ones finish for up to
  JOBS_SHUTDOWN_GRACE seconds, then hand the rest back (queued again, attempt not counted)
  and exit. A second SIGTERM/SIGINT hands back at once. SIGKILL: jobs.services.jobs_reconcile
  recovers the jobs once their heartbeats expire.
* All threads share the process's bounded, blocking Redis pool (project.redis) and Django's
  database pool; a job holds a database connection only while it reads or writes.
"""

import logging
import threading
import time
from datetime import timedelta

import redis
from django.conf import settings
from rq.exceptions import DequeueTimeout
from rq.job import Job as RQJob
from rq.timeouts import BaseDeathPenalty
from rq.utils import ensure_job_list, now
from rq.worker import BaseWorker, WorkerStatus

from jobs import queueing, runner

logger = logging.getLogger("parley.jobs")

HAND_BACK_WAIT_SECONDS = 10  # after asking running jobs to hand back, wait this long for them
HEARTBEAT_MIN_INTERVAL = 5  # seconds between the main loop's own worker heartbeats


class NoDeathPenalty(BaseDeathPenalty):
    """RQ's timeouts interrupt the main thread with a signal; a job thread cannot be
    interrupted, so the handler enforces JOBS_TIMEOUT itself (jobs.runner.Watchdog)."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class ThreadPoolWorker(BaseWorker):
    death_penalty_class = NoDeathPenalty
    log_result_lifespan = False  # one line per job is enough at hundreds of jobs a minute
    poll_seconds = 1  # a blocking dequeue returns this often to notice a shutdown request

    def __init__(self, queues, *args, concurrency: int | None = None, **kwargs) -> None:
        self._local = threading.local()  # before BaseWorker sets self.execution
        self._cond = threading.Condition()
        self._running: dict[str, tuple[RQJob, object]] = {}  # job id -> (job, RQ execution)
        self._in_flight = 0  # slots taken: dequeued and not finished yet
        self._hand_back_now = threading.Event()
        self.concurrency = max(1, concurrency or settings.JOBS_WORKER_CONCURRENCY)
        names = [q if isinstance(q, str) else q.name for q in ensure_job_list(queues)]
        # Every thread shares the process's bounded, blocking pool (one per Redis URL).
        kwargs["connection"] = queueing.connection(names[0])
        super().__init__(names, *args, **kwargs)

    # --- One RQ execution per thread ----------------------------------------------------
    # BaseWorker keeps "the" current execution on the worker; here each thread has its own.

    @property
    def execution(self):
        return getattr(self._local, "execution", None)

    @execution.setter
    def execution(self, value) -> None:
        self._local.execution = value

    def _set_connection(self, connection):
        # BaseWorker raises the pool's socket timeout above its long blocking dequeue; ours
        # polls every second, and the pool is shared with every other thread of the process.
        return connection

    @property
    def dequeue_timeout(self) -> int:
        return self.poll_seconds

    def get_heartbeat_ttl(self, job: RQJob) -> int:
        # RQ's own heartbeats for running jobs come from the watch, every JOBS_HEARTBEAT_TTL/3.
        return int(max(self.job_monitoring_interval, settings.JOBS_HEARTBEAT_TTL)) + 60

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        # BaseWorker beats around every dequeue; at hundreds of jobs a minute that is a Redis
        # write per job. The watch beats every JOBS_HEARTBEAT_TTL/3 s in its pipeline anyway.
        if pipeline is None and self.last_heartbeat is not None:
            if (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_MIN_INTERVAL:
                return
        super().heartbeat(timeout, pipeline=pipeline)

    def set_current_job_id(self, job_id: str | None = None, pipeline=None) -> None:
        # The worker hash has room for one current job: show one that is still running.
        if job_id is None:
            with self._cond:
                job_id = next(iter(self._running), None)
        super().set_current_job_id(job_id, pipeline=pipeline)

    def set_current_job_working_time(self, current_job_working_time, pipeline=None) -> None:
        pass  # meaningless with many jobs at once

    # --- The loop: take a job only when a slot is free ----------------------------------

    def work(self, *args, **kwargs) -> bool:
        runner.watch.add_contributor(self.connection, self._beat)
        try:
            return super().work(*args, **kwargs)
        finally:
            runner.watch.remove_contributor(self._beat)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        burst = timeout is None
        idle_since = time.monotonic()
        connection_wait = 1.0
        while not self._stop_requested:
            if not self._wait_for_slot():
                continue
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                result = self.queue_class.dequeue_any(
                    self._ordered_queues,
                    None if burst else self.poll_seconds,
                    connection=self.connection,
                    job_class=self.job_class,
                    serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class,
                )
                connection_wait = 1.0
            except DequeueTimeout:
                result = None
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # e.g. Redis restarting
                self.log.error("Worker %s: cannot reach Redis (%s), retrying", self.name, exc)
                time.sleep(connection_wait)
                connection_wait = min(connection_wait * 2, self.max_connection_wait_time)
                continue
            if result is not None:
                job, queue = result
                self.reorder_queues(reference_queue=queue)
                self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
                return result
            if self._in_flight:
                idle_since = time.monotonic()
                if burst:  # empty for now: a running job may still queue a retry
                    self._wait_for_a_job_to_finish()
                continue
            if burst:
                return None
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None
        self.log.info("Worker %s: stopping on request", self.name)
        return None

    def _wait_for_slot(self) -> bool:
        with self._cond:
            return (
                self._cond.wait_for(
                    lambda: self._in_flight < self.concurrency or self._stop_requested,
                    timeout=self.poll_seconds,
                )
                and not self._stop_requested
            )

    def _wait_for_a_job_to_finish(self) -> None:
        with self._cond:
            before = self._in_flight
            self._cond.wait_for(lambda: self._in_flight < before, timeout=self.poll_seconds)

    def execute_job(self, job: RQJob, queue) -> None:
        with self._cond:
            self._in_flight += 1
        thread = threading.Thread(
            target=self._perform, args=(job, queue), name=f"job-{job.id}", daemon=True
        )
        thread.start()

    def _perform(self, job: RQJob, queue) -> None:
        try:
            execution = self.prepare_execution(job)
            with self._cond:
                self._running[job.id] = (job, execution)
            self.perform_job(job, queue)  # RQ's bookkeeping: started, then finished or failed
            if getattr(job, "_result", None) == runner.HANDED_BACK:
                # Only now: enqueuing earlier would let RQ's "finished" overwrite "queued".
                queueing.rq_enqueue(job.id, queue.name)
        except Exception:
            self.log.exception("Worker %s: job %s could not be run", self.name, job.id)
        finally:
            with self._cond:
                self._running.pop(job.id, None)
                self._in_flight -= 1
                idle = self._in_flight == 0
                self._cond.notify_all()
            if idle:
                try:
                    self.set_state(WorkerStatus.IDLE)
                except redis.RedisError:
                    pass

    def _beat(self, pipeline) -> None:
        """RQ's heartbeats for the worker and every execution, in the watch's pipeline."""
        with self._cond:
            running = list(self._running.values())
        self.heartbeat(pipeline=pipeline)
        ttl = self.get_heartbeat_ttl(None)
        for job, execution in running:
            execution.heartbeat(job.started_job_registry, ttl, pipeline=pipeline)
            job.heartbeat(now(), ttl, pipeline=pipeline, xx=True)

    # --- Shutdown -------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """First SIGTERM/SIGINT: stop taking jobs; ``teardown`` drains the running ones."""
        self._stop_requested = True
        try:
            self.set_shutdown_requested_date()
        except redis.RedisError:
            pass
        if self.scheduler:
            self.stop_scheduler()

    def request_force_stop(self, signum, frame) -> None:
        """Second signal: hand the running jobs back now instead of waiting for the grace."""
        if self._shutdown_requested_date and now() - self._shutdown_requested_date < timedelta(
            seconds=1
        ):
            return  # the same signal delivered twice (worker pool and terminal)
        self.log.warning("Worker %s: handing running jobs back now", self.name)
        self._hand_back_now.set()

    def teardown(self) -> None:
        self._drain()
        super().teardown()

    def _drain(self) -> None:
        grace = settings.JOBS_SHUTDOWN_GRACE
        if self._in_flight:
            self.log.info(
                "Worker %s: waiting up to %ss for %d running jobs",
                self.name,
                grace,
                self._in_flight,
            )
        deadline = time.monotonic() + grace
        with self._cond:
            while self._in_flight and not self._hand_back_now.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        if not self._in_flight:
            return
        handed = runner.watch.interrupt_all()
        self.log.warning("Worker %s: handing back %d unfinished jobs", self.name, handed)
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0, timeout=HAND_BACK_WAIT_SECONDS)
            if self._in_flight:
                # Stuck on a provider that sends nothing: their heartbeats stop with this
                # process and reconcile_jobs recovers them.
                self.log.warning(
                    "Worker %s: exiting with %d jobs still running", self.name, self._in_flight
                )
