"""Queued completions served as in production (gunicorn + uvicorn workers, PostgreSQL, Redis,
RQ worker processes) against a zero-latency stand-in provider. Prints:

1. POST .../messages/ requests/s and p50/p99 next to a bare authenticated DRF endpoint
   (GET /api/v1/auth/me/) measured in the same run with the same client;
2. queue wait (job created -> started) p50/p99 while messages arrive at a steady 50/s;
3. completions per second per worker process.

Needs the machine's PostgreSQL and Redis (DATABASE_URL / REDIS_URL to override; it uses its
own database `parley_bench` and Redis database 9, both wiped first).

    .venv/bin/python bench/completions.py [--posts 400] [--workers 2]
"""

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Stack:
    def __init__(self, env: dict) -> None:
        self.env = env
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []

    def manage(self, *args: str, capture: bool = False) -> str:
        result = subprocess.run(
            [PY, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def spawn(self, *args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open("/tmp/bench-stack.log", "a"),
        )
        self.processes.append(process)
        return process

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            self.workers.append(
                self.spawn(
                    PY, "manage.py", "rqworker", "completions", "default", "--with-scheduler"
                )
            )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=30)
        self.workers = []

    def prepare(self, standin_port: int) -> None:
        """A fresh bench database and Redis database, migrated and seeded, with the bench user
        and a zero-latency stand-in provider."""
        if "parley_bench" in self.env["DATABASE_URL"]:
            for command in (["dropdb", "--if-exists"], ["createdb"]):
                subprocess.run(
                    [*command, "-h", "127.0.0.1", "-U", "postgres", "parley_bench"], check=True
                )
        import redis

        redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("seed_models")
        self.manage(
            "ensure_demo_user", "--email", "bench@example.com", "--password", "bench-password-123"
        )
        self.spawn(
            PY,
            "manage.py",
            "run_standin_provider",
            "--port",
            str(standin_port),
            "--latency-ms",
            "0",
            "--tokens-per-second",
            "0",
            "--reply-tokens",
            "20",
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def hammer(make_request, total: int, concurrency: int) -> tuple[float, list[float]]:
    """Send `total` requests with `concurrency` in flight; returns (requests/s, latencies ms)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def lane():
        for index in counter:
            started = time.perf_counter()
            response = await make_request(index)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code < 300, response.text

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return total / (time.perf_counter() - started), latencies


async def paced(make_request, rate: float, total: int) -> None:
    async with asyncio.TaskGroup() as group:
        start = time.perf_counter()
        for index in range(total):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(make_request(index))


def queue_waits(stack: Stack, since: float) -> list[float]:
    code = (
        "import django;django.setup();from jobs.models import Job;from datetime import datetime,UTC;"
        f"since=datetime.fromtimestamp({since},UTC);"
        "rows=Job.objects.filter(created_at__gte=since,started_at__isnull=False).values_list('created_at','started_at');"
        "print('\\n'.join(str((s-c).total_seconds()*1000) for c,s in rows))"
    )
    out = subprocess.run(
        [PY, "-c", code], cwd=ROOT, env=stack.env, check=True, capture_output=True, text=True
    ).stdout
    return [float(line) for line in out.split()]


def busy_seconds(stack: Stack) -> float:
    """First job started to last job finished, from the database: excludes worker start-up."""
    code = (
        "import django;django.setup();from jobs.models import Job;from django.db.models import Min,Max;"
        "r=Job.objects.filter(kind='llm.completion').aggregate(a=Min('started_at'),b=Max('finished_at'));"
        "print((r['b']-r['a']).total_seconds())"
    )
    out = subprocess.run(
        [PY, "-c", code], cwd=ROOT, env=stack.env, check=True, capture_output=True, text=True
    ).stdout
    return float(out)


def pending(stack: Stack) -> int:
    code = "import django;django.setup();from jobs.models import Job;print(Job.objects.filter(status__in=['queued','in_progress']).count())"
    return int(
        subprocess.run(
            [PY, "-c", code], cwd=ROOT, env=stack.env, check=True, capture_output=True, text=True
        ).stdout
    )


def bench_env(standin_port: int, **extra: str) -> dict[str, str]:
    """Production settings against the bench database and Redis database 9."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings.production",
        "SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "JWT_SIGNING_KEY": "bench-jwt-key-" + "y" * 40,
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/parley_bench"
        ),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
        "STANDIN_BASE_URL": f"http://127.0.0.1:{standin_port}",
        "THROTTLE_USER_RATE": "1000000/minute",
        "THROTTLE_TOKEN_RATE": "1000000/minute",
        "THROTTLE_REGISTER_RATE": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes for the queue-wait run"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[50, 10], help="jobs/s for queue wait"
    )
    args = parser.parse_args()

    web_port, standin_port = free_port(), free_port()
    database = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/parley_bench")
    env = bench_env(
        standin_port,
        DATABASE_URL=database,
        PORT=str(web_port),
        WEB_CONCURRENCY=str(args.web_workers),
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stack = Stack(env)
    try:
        stack.prepare(standin_port)
        stack.spawn(
            PY, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "project.asgi:application"
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_http(base + "/healthz")
        wait_http(env["STANDIN_BASE_URL"] + "/healthz")
        print(
            f"gunicorn: {args.web_workers} uvicorn workers; PostgreSQL; Redis; cpus={os.cpu_count()} (client shares them)"
        )
        asyncio.run(run(stack, base, args))
    finally:
        stack.stop()


async def run(stack: Stack, base: str, args) -> None:
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        token = (
            await client.post(
                "/api/v1/auth/token/",
                json={"email": "bench@example.com", "password": "bench-password-123"},
            )
        ).json()["access"]
        client.headers["Authorization"] = f"Bearer {token}"

        async def conversations(count: int) -> list[str]:
            ids = []
            for _ in range(count):
                response = await client.post(
                    "/api/v1/conversations/", json={"model": "standin-gpt"}
                )
                ids.append(response.json()["id"])
            return ids

        # 1. POST throughput next to a bare authenticated endpoint, no workers running.
        targets = await conversations(args.posts)
        await hammer(lambda i: client.get("/api/v1/auth/me/"), 100, args.concurrency)  # warm up
        bare_rps, bare = await hammer(
            lambda i: client.get("/api/v1/auth/me/"), args.posts, args.concurrency
        )
        post_rps, posts = await hammer(
            lambda i: client.post(
                f"/api/v1/conversations/{targets[i]}/messages/", json={"content": f"hello {i}"}
            ),
            args.posts,
            args.concurrency,
        )
        print(
            f"GET  /auth/me/ (bare)    {bare_rps:7.1f} req/s  p50 {statistics.median(bare):6.1f} ms  p99 {pct(bare, 0.99):6.1f} ms"
        )
        print(
            f"POST .../messages/       {post_rps:7.1f} req/s  p50 {statistics.median(posts):6.1f} ms  p99 {pct(posts, 0.99):6.1f} ms"
            f"  ({post_rps / bare_rps:.0%} of bare)"
        )

        # 3. Completions per second for one worker process, draining what was just queued.
        stack.start_workers(1)
        while pending(stack) > 0:
            await asyncio.sleep(0.2)
        drained = busy_seconds(stack)
        stack.stop_workers()
        print(
            f"one worker process       {args.posts / drained:7.1f} completions/s ({args.posts} in {drained:.1f} s, 20-token replies)"
        )

        # 2. Queue wait at steady arrival rates with N worker processes.
        stack.start_workers(args.workers)
        await asyncio.sleep(2)  # workers up
        for rate in args.rates:
            total = int(rate * 10)
            fresh = await conversations(total)
            since = time.time()
            await paced(
                lambda i, fresh=fresh: client.post(
                    f"/api/v1/conversations/{fresh[i]}/messages/", json={"content": f"paced {i}"}
                ),
                rate,
                total,
            )
            while pending(stack) > 0:
                await asyncio.sleep(0.2)
            waits = queue_waits(stack, since)
            print(
                f"queue wait at {rate:>3} jobs/s p50 {statistics.median(waits):8.1f} ms  p99 {pct(waits, 0.99):8.1f} ms  ({len(waits)} jobs, {args.workers} worker processes)"
            )
        stack.stop_workers()


if __name__ == "__main__":
    main()
