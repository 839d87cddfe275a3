"""Concurrent completions served as in production: gunicorn + uvicorn workers, PostgreSQL,
Redis, the stand-in provider in its own process, and worker processes running
jobs.worker.ThreadPoolWorker (or, for the baseline, rq's one-at-a-time SimpleWorker).
Replies take ~5 s (stand-in model ``standin-tps10-len50``). Prints a table:

1. P4: N completions (default 1,000) posted as fast as the web tier takes them, 2 worker
   processes: completed, wall time first POST -> last completion, peak in flight (RQ's
   started registries), total worker RSS (peak), PostgreSQL connections (peak), worker CPU s
   per completion;
2. queue wait (created -> started) p50/p99 with messages arriving at 20 and 50 jobs/s;
3. the same P4 with SimpleWorker at a smaller N (extrapolated, and said so);
4. CPU per 1,000 streamed tokens spent publishing deltas, per token vs coalesced.

Uses its own PostgreSQL database (``--database``, default ``parley_concurrency``, dropped and
created) and a private redis-server on a free port (never the machine's 6379).

    .venv/bin/python bench/concurrency.py [--jobs 1000] [--concurrency 300] [--baseline-jobs 20]
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from completions import PY, ROOT, Stack, bench_env, free_port, pct, wait_http

MODEL = "standin-5s"
PROVIDER_MODEL = "standin-tps10-len50"
WORKER_APP = "parley-bench-worker"
TICKS = os.sysconf("SC_CLK_TCK")


class Workers:
    """Worker processes of one kind, with their RSS and CPU read from /proc."""

    def __init__(self, stack: Stack, count: int, worker_class: str, concurrency: int) -> None:
        env = {**stack.env, "JOBS_WORKER_CONCURRENCY": str(concurrency), "PGAPPNAME": WORKER_APP}
        self.processes = [
            subprocess.Popen(
                [PY, "manage.py", "rqworker", "--worker-class", worker_class, "completions"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open("/tmp/bench-concurrency-workers.log", "a"),
            )
            for _ in range(count)
        ]

    def rss_mib(self) -> float:
        total = 0
        for process in self.processes:
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024

    def cpu_seconds(self) -> float:
        total = 0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except FileNotFoundError:
                pass
        return total / TICKS

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


class Sampler:
    """Samples in-flight jobs, worker RSS and PostgreSQL connections every 0.2 s."""

    def __init__(self, env: dict, workers: Workers) -> None:
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.database = psycopg.connect(env["DATABASE_URL"], autocommit=True)
        self.name = env["DATABASE_URL"].rsplit("/", 1)[1]
        self.workers = workers
        self.peak_in_flight = self.peak_rss = self.peak_connections = 0
        self.peak_worker_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            running = self.redis.zcard("rq:wip:completions")  # RQ's StartedJobRegistry
            self.peak_in_flight = max(self.peak_in_flight, running)
            self.peak_rss = max(self.peak_rss, self.workers.rss_mib())
            rows = self.database.execute(
                "SELECT count(*), count(*) FILTER (WHERE application_name = %s)"
                " FROM pg_stat_activity WHERE datname = %s",
                [WORKER_APP, self.name],
            ).fetchone()
            self.peak_connections = max(self.peak_connections, rows[0])
            self.peak_worker_connections = max(self.peak_worker_connections, rows[1])
            time.sleep(0.2)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fresh_database(name: str) -> str:
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


class PrivateRedis:
    """A redis-server of our own on a free port; ``restart()`` keeps the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "PrivateRedis":
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def sql(env: dict, query: str, params=()) -> list[tuple]:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def arrival(env: dict, since: float) -> float:
    """Jobs created per second since ``since`` (what the web tier really delivered)."""
    count, first, last = sql(
        env,
        "SELECT count(*), extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at))"
        " FROM jobs_job WHERE created_at >= to_timestamp(%s)",
        [since],
    )[0]
    return count / max(float(last) - float(first), 1e-9)


def pending(env: dict, since: float) -> int:
    return sql(
        env,
        "SELECT count(*) FROM jobs_job WHERE status IN ('queued', 'in_progress')"
        " AND created_at >= to_timestamp(%s)",
        [since],
    )[0][0]


def finished(env: dict, since: float) -> tuple[int, float | None, list[float]]:
    """(completed count, last finish as epoch, queue waits in s) of jobs created since."""
    rows = sql(
        env,
        "SELECT status, extract(epoch FROM finished_at),"
        " extract(epoch FROM started_at - created_at)"
        " FROM jobs_job WHERE created_at >= to_timestamp(%s)",
        [since],
    )
    completed = [r for r in rows if r[0] == "completed"]
    last = max((float(r[1]) for r in completed), default=None)
    waits = [float(r[2]) for r in rows if r[2] is not None]
    return len(completed), last, waits


@contextlib.asynccontextmanager
async def open_client(base: str):
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=64)
    ) as client:
        token = (
            await client.post(
                "/api/v1/auth/token/",
                json={"email": "bench@example.com", "password": "bench-password-123"},
            )
        ).json()["access"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def conversations(client: httpx.AsyncClient, count: int, model: str = MODEL) -> list[str]:
    async def one(_):
        response = await client.post("/api/v1/conversations/", json={"model": model})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    ids: list[str] = []
    for start in range(0, count, 32):
        ids += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 32))))
    return ids


async def send(client: httpx.AsyncClient, conversation: str, content: str) -> None:
    """POST one message; a dropped keep-alive connection is retried with the same
    Idempotency-Key, so a retry never posts twice."""
    for attempt in range(4):
        try:
            response = await client.post(
                f"/api/v1/conversations/{conversation}/messages/",
                json={"content": content},
                headers={"Idempotency-Key": f"bench-{conversation}"},
            )
        except httpx.TransportError:
            if attempt == 3:
                raise
            await asyncio.sleep(0.2)
            continue
        assert response.status_code in (200, 201, 202), response.text
        return


async def post_all(client: httpx.AsyncClient, targets: list[str], lanes: int = 32) -> None:
    queue = iter(enumerate(targets))

    async def lane():
        for index, conversation in queue:
            await send(client, conversation, f"hello {index}")

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def post_paced(client: httpx.AsyncClient, targets: list[str], rate: float) -> None:
    async with asyncio.TaskGroup() as group:
        start = time.perf_counter()
        for index, conversation in enumerate(targets):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(send(client, conversation, f"paced {index}"))


def wait_workers(env: dict, count: int) -> None:
    client = redis.Redis.from_url(env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while client.scard("rq:workers") < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start; see /tmp/bench-concurrency-workers.log")
        time.sleep(0.2)


async def burst(
    stack: Stack, base: str, *, jobs: int, worker_class: str, concurrency: int, backlog: bool
):
    """P4 with 2 worker processes: post ``jobs`` messages as fast as the web tier takes them
    while the workers run, or (``backlog``) all before the workers start, so the workers' side
    is measured alone: wall time is then from the workers' start to the last completion."""
    async with open_client(base) as client:
        targets = await conversations(client, jobs)
        since = time.time()
        if backlog:
            await post_all(client, targets)
            posted_in = time.time() - since
        workers = Workers(stack, 2, worker_class, concurrency)
        try:
            start = time.time()
            wait_workers(stack.env, 2)
            cpu_before = workers.cpu_seconds()
            with Sampler(stack.env, workers) as sampler:
                if not backlog:
                    start = time.time()
                    await post_all(client, targets)
                    posted_in = time.time() - start
                timeout = 120 + jobs * 5 / (2 * concurrency) * 3
                while pending(stack.env, since - 1) > 0:
                    if time.time() - start > timeout:
                        break
                    await asyncio.sleep(0.5)
            cpu = workers.cpu_seconds() - cpu_before
            completed, last, waits = finished(stack.env, since - 1)
        finally:
            workers.stop()
    return {
        "completed": completed,
        "posted_in": posted_in,
        "backlog": backlog,
        "wall": (last - start) if last else float("nan"),
        "peak_in_flight": sampler.peak_in_flight,
        "rss": sampler.peak_rss,
        "pg_peak": sampler.peak_connections,
        "pg_workers_peak": sampler.peak_worker_connections,
        "cpu_per_completion": cpu / max(completed, 1),
        "wait_p50": statistics.median(waits) if waits else float("nan"),
    }


async def queue_waits(stack: Stack, base: str, rates: list[int], seconds: int, concurrency: int):
    results = {}
    async with open_client(base) as client:
        workers = Workers(stack, 2, "jobs.worker.ThreadPoolWorker", concurrency)
        try:
            wait_workers(stack.env, 2)
            for rate in rates:
                targets = await conversations(client, rate * seconds)
                since = time.time()
                await post_paced(client, targets, rate)
                while pending(stack.env, since - 1) > 0:
                    await asyncio.sleep(0.5)
                _, _, waits = finished(stack.env, since - 1)
                achieved = arrival(stack.env, since - 1)
                results[rate] = (statistics.median(waits), pct(waits, 0.99), len(waits), achieved)
        finally:
            workers.stop()
    return results


def delta_publishing_cpu(env: dict, standin_url: str, replies: int = 20, tokens: int = 200):
    """CPU per 1,000 tokens of one process streaming ``replies`` replies at once at 100
    tokens/s (a fast real provider), publishing every delta vs coalescing them."""
    code = f"""
import threading, time, django
django.setup()
from llm import streams
from llm.providers import ChatMessage, ChatRequest, get_provider
provider = get_provider("openai", api_key="standin", base_url="{standin_url}/v1", timeout=30)
def run(mode):
    def one(i):
        message_id = f"bench-{{mode}}-{{i}}"
        deltas = streams.ReplyDeltas(message_id)
        publish = (lambda t: streams.reply_publish(message_id, "delta", {{"text": t}})) if mode == "per-token" else deltas.add
        request = ChatRequest(model="standin-tps100-len{tokens}", messages=[ChatMessage("user", f"q {{i}}")], max_tokens=1000)
        provider.complete(request, on_delta=publish)
        deltas.flush()
    threads = [threading.Thread(target=one, args=(i,)) for i in range({replies})]
    started = time.process_time()
    for t in threads: t.start()
    for t in threads: t.join()
    return (time.process_time() - started) / ({replies} * {tokens} / 1000)
run("per-token")  # warm up
for mode in ("per-token", "coalesced", "per-token", "coalesced"):
    print(mode, run(mode))
"""
    out = subprocess.run(
        [PY, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    figures: dict[str, list[float]] = {}
    for line in out.split("\n"):
        if line.strip():
            mode, value = line.split()
            figures.setdefault(mode, []).append(float(value))
    return {mode: min(values) for mode, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=300, help="per worker process")
    parser.add_argument("--baseline-jobs", type=int, default=20)
    parser.add_argument("--rates", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--rate-seconds", type=int, default=15)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="any of: p4 p4-backlog baseline waits deltas"
    )
    parser.add_argument("--database", default="parley_concurrency")
    parser.add_argument(
        "--reply-seconds",
        type=int,
        default=5,
        help="length of every reply (10 tokens a second); real providers take 5-60 s",
    )
    args = parser.parse_args()
    global PROVIDER_MODEL
    PROVIDER_MODEL = f"standin-tps10-len{args.reply_seconds * 10}"

    web_port, standin_port = free_port(), free_port()
    private_redis = PrivateRedis().start()
    env = bench_env(
        standin_port,
        DATABASE_URL=fresh_database(args.database),
        REDIS_URL=private_redis.url,
        PORT=str(web_port),
        WEB_CONCURRENCY=str(args.web_workers),
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stack = Stack(env)
    try:
        stack.prepare(standin_port)
        stack.manage(
            "shell",
            "-c",
            "from llm.models import LLMModel;"
            f"LLMModel.objects.create(slug='{MODEL}', display_name='bench replies',"
            f" provider='openai', provider_model='{PROVIDER_MODEL}', is_standin=True,"
            " context_window=16384, max_output_tokens=1024, input_price_per_mtok=1,"
            " output_price_per_mtok=2)",
        )
        stack.spawn(
            PY, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "project.asgi:application"
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_http(base + "/healthz")
        wait_http(env["STANDIN_BASE_URL"] + "/healthz")
        print(
            f"gunicorn: {args.web_workers} uvicorn workers; PostgreSQL; Redis; stand-in process;"
            f" cpus={os.cpu_count()} (client shares them); replies: {PROVIDER_MODEL}"
        )
        for backlog in (False, True):
            if ("p4-backlog" if backlog else "p4") in args.skip:
                continue
            p4 = asyncio.run(
                burst(
                    stack,
                    base,
                    jobs=args.jobs,
                    worker_class="jobs.worker.ThreadPoolWorker",
                    concurrency=args.concurrency,
                    backlog=backlog,
                )
            )
            print_p4("ThreadPoolWorker", args.jobs, args.concurrency, p4)
        if "baseline" not in args.skip:
            base_p4 = asyncio.run(
                burst(
                    stack,
                    base,
                    jobs=args.baseline_jobs,
                    worker_class="rq.worker.SimpleWorker",
                    concurrency=1,
                    backlog=False,
                )
            )
            print_p4("SimpleWorker (baseline)", args.baseline_jobs, 1, base_p4)
            rate = base_p4["completed"] / base_p4["wall"]
            print(
                f"  extrapolated to {args.jobs} jobs: {args.jobs / rate:.0f} s"
                f" ({rate:.2f} completions/s with 2 processes)"
            )
        if "waits" not in args.skip:
            waits = asyncio.run(
                queue_waits(stack, base, args.rates, args.rate_seconds, args.concurrency)
            )
            for rate, (p50, p99, count, achieved) in waits.items():
                print(
                    f"queue wait at {rate:>3} jobs/s ({args.reply_seconds} s replies, 2 ThreadPoolWorker processes):"
                    f" p50 {p50 * 1000:7.0f} ms  p99 {p99 * 1000:7.0f} ms  ({count} jobs;"
                    f" the web tier delivered {achieved:.1f} jobs/s)"
                )
        if "deltas" not in args.skip:
            cpu = delta_publishing_cpu(env, env["STANDIN_BASE_URL"])
            print(
                "CPU per 1,000 streamed tokens (20 replies at once, 100 tokens/s):"
                f" per-token XADD {cpu['per-token'] * 1000:.0f} ms,"
                f" coalesced {cpu['coalesced'] * 1000:.0f} ms"
            )
    finally:
        stack.stop()
        private_redis.stop()


def print_p4(label: str, jobs: int, concurrency: int, r: dict) -> None:
    how = "all posted before the workers start" if r["backlog"] else "posted while they run"
    print(f"P4 with {label}: {jobs} replies ({how}), 2 processes x concurrency {concurrency}")
    print(f"  completed                       {r['completed']} / {jobs}")
    print(f"  posted in                       {r['posted_in']:.1f} s")
    if r["backlog"]:
        print(f"  wall, workers start -> last done {r['wall']:.1f} s")
    else:
        print(f"  wall, first POST -> last done   {r['wall']:.1f} s")
    print(f"  peak in flight                  {r['peak_in_flight']}")
    print(f"  worker RSS, peak total          {r['rss']:.0f} MiB")
    print(f"  PostgreSQL connections, peak    {r['pg_peak']} (workers {r['pg_workers_peak']})")
    print(f"  worker CPU per completion       {r['cpu_per_completion'] * 1000:.1f} ms")
    print(f"  queue wait p50                  {r['wait_p50']:.2f} s")


if __name__ == "__main__":
    main()
