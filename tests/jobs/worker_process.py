"""A real ``manage.py rqworker --worker-class jobs.worker.ThreadPoolWorker`` in its own process,
against the test database and Redis, for tests that need jobs to run concurrently."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import connection

from tests.live import rq_worker_registered, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
WORKER_CLASS = "jobs.worker.ThreadPoolWorker"
APP_NAME = "parley-test-worker"  # the worker's PostgreSQL application_name


def worker_database_url() -> str:
    """The test database, for a process the test starts: PostgreSQL's test database, or on
    SQLite (no DATABASE_URL) the test database's file."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{connection.settings_dict['NAME']}"
    return url.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def worker_process(
    *queues: str,
    standin_url: str = "",
    burst: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[WorkerProcess]:
    """Start a worker on ``queues`` (default: completions, default); stop it (SIGKILL if it
    will not go) when the block ends."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
        "DATABASE_URL": worker_database_url(),
        "STANDIN_BASE_URL": standin_url,
        "PGAPPNAME": APP_NAME,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, "manage.py", "rqworker", "--worker-class", WORKER_CLASS]
    command += ["--burst"] if burst else []
    command += list(queues or ("completions", "default"))
    log = Path(tempfile.mkstemp(prefix="parley-worker-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    worker = WorkerProcess(process, log)
    try:
        if not burst:  # a burst worker may be done before anyone looks; its test waits for it
            wait_until_ready(
                process,
                lambda: rq_worker_registered(process.pid),
                what="the worker",
                output=worker.output,
            )
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        log.unlink(missing_ok=True)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, worker=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = f"\n--- worker output ---\n{worker.output()[-4000:]}" if worker else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(0.05)
