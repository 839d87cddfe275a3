"""Real servers for end-to-end tests: the ASGI app under uvicorn, and RQ workers."""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn


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
