"""Faults with many completions in flight, served as in production (gunicorn + uvicorn,
PostgreSQL, a private Redis, the stand-in in its own process, 2 ThreadPoolWorker processes):

* N replies (default 200) of ~5 s posted at once, the stand-in failing 10% of calls at random
  (429, 500, 529, a dropped stream, a hang: model ``standin-chaos10-tps10-len50``);
* a worker process SIGKILLed K times (default 10) at random moments, restarted each time;
* the private redis-server restarted once (everything in it is lost: queues, registries,
  heartbeats, live streams);
* ``reconcile_jobs`` every few seconds, as the scheduler service runs it.

Afterwards, once nothing is queued or running (or 2 minutes after the last fault), it prints:
completed / failed / cancelled / stuck jobs, lost user messages, usage rows against completed
replies, and completed replies whose text is duplicated or truncated (the stand-in's replies
are deterministic, so each one is compared with what it must be).

    .venv/bin/python bench/faults.py [--jobs 200] [--kills 10] [--seed 1]
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from completions import PY, ROOT, Stack, bench_env, free_port, wait_http
from concurrency import PrivateRedis, conversations, fresh_database, open_client, post_all

sys.path.insert(0, str(ROOT))
from llm.standin.behaviour import reply_tokens

MODEL = "standin-faulty-5s"
REPLY_TOKENS = 50
PROVIDER_MODEL = f"standin-chaos10-tps10-len{REPLY_TOKENS}"


class Worker:
    def __init__(self, env: dict, log) -> None:
        self.env, self.log = env, log
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [
                PY,
                "manage.py",
                "rqworker",
                "--worker-class",
                "jobs.worker.ThreadPoolWorker",
                "--with-scheduler",
                "completions",
                "default",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,  # so a kill takes its scheduler child too
        )

    def kill_and_restart(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = self._start()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def reconciler(env: dict, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        subprocess.run(
            [PY, "manage.py", "reconcile_jobs"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def unfinished(env: dict) -> int:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM jobs_job WHERE status IN ('queued', 'in_progress')"
        ).fetchone()[0]


def in_progress(env: dict) -> int:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM jobs_job WHERE status = 'in_progress'"
        ).fetchone()[0]


def report(env: dict, posted: int) -> dict:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        jobs = Counter(
            status for (status,) in conn.execute("SELECT status FROM jobs_job").fetchall()
        )
        users = conn.execute("SELECT count(*) FROM llm_message WHERE role = 'user'").fetchone()[0]
        replies = conn.execute(
            "SELECT a.id, a.content, a.output_tokens, u.content,"
            " (SELECT count(*) FROM llm_usage g WHERE g.message_id = a.id)"
            " FROM llm_message a JOIN llm_message u"
            " ON u.conversation_id = a.conversation_id AND u.role = 'user'"
            " WHERE a.role = 'assistant' AND a.status = 'completed'"
        ).fetchall()
        usage_rows = conn.execute("SELECT count(*) FROM llm_usage").fetchone()[0]
        attempts = conn.execute("SELECT max(attempts), avg(attempts) FROM jobs_job").fetchone()
    wrong = 0
    for _, content, output_tokens, question, _ in replies:
        expected = "".join(reply_tokens("", [{"role": "user", "content": question}], 50))
        wrong += content != expected or output_tokens != REPLY_TOKENS
    return {
        "jobs": jobs,
        "lost_user_messages": posted - users,
        "completed_replies": len(replies),
        "usage_rows": usage_rows,
        "replies_without_exactly_one_usage": sum(1 for r in replies if r[4] != 1),
        "duplicated_or_truncated": wrong,
        "attempts_max": attempts[0],
        "attempts_avg": float(attempts[1] or 0),
    }


async def post(base: str, jobs: int) -> None:
    async with open_client(base) as client:
        targets = await conversations(client, jobs, MODEL)
        await post_all(client, targets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--fault-window", type=float, default=30, help="seconds of kills")
    parser.add_argument("--concurrency", type=int, default=150, help="per worker process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="parley_faults")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    web_port, standin_port = free_port(), free_port()
    private_redis = PrivateRedis().start()
    env = bench_env(
        standin_port,
        DATABASE_URL=fresh_database(args.database),
        REDIS_URL=private_redis.url,
        PORT=str(web_port),
        WEB_CONCURRENCY="2",
        JOBS_WORKER_CONCURRENCY=str(args.concurrency),
        JOBS_HEARTBEAT_TTL="6",
        JOBS_ENQUEUE_GRACE="5",
        JOBS_SHUTDOWN_GRACE="5",
        JOBS_BACKOFF_BASE="1",
        JOBS_BACKOFF_MAX="8",
        JOBS_MAX_ATTEMPTS="8",  # every kill costs the attempts it interrupts
        LLM_REQUEST_TIMEOUT="8",  # a hung provider is given up on after 8 s
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stack = Stack(env)
    stop_reconciling = threading.Event()
    workers: list[Worker] = []
    log = open("/tmp/bench-faults-workers.log", "w")
    try:
        stack.prepare(standin_port)
        stack.manage(
            "shell",
            "-c",
            "from llm.models import LLMModel;"
            f"LLMModel.objects.create(slug='{MODEL}', display_name='5-second faulty replies',"
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
        # All posted first, so the faults land on replies in flight, not on a trickle.
        started = time.monotonic()
        asyncio.run(post(base, args.jobs))
        print(f"posted {args.jobs} replies in {time.monotonic() - started:.1f} s")
        workers = [Worker(env, log), Worker(env, log)]
        threading.Thread(target=reconciler, args=(env, stop_reconciling, 5), daemon=True).start()
        deadline = time.monotonic() + 60
        while in_progress(env) < args.jobs * 0.75 and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"{in_progress(env)} replies in flight")

        kill_times = sorted(rng.uniform(1, args.fault_window) for _ in range(args.kills))
        redis_restart_at = rng.uniform(args.fault_window * 0.3, args.fault_window * 0.7)
        events = [(t, "kill") for t in kill_times] + [(redis_restart_at, "redis")]
        t0 = time.monotonic()
        for at, what in sorted(events):
            time.sleep(max(0, t0 + at - time.monotonic()))
            if what == "kill":
                victim = rng.choice(workers)
                victim.kill_and_restart()
                print(
                    f"  {at:5.1f} s  SIGKILL worker, restarted ({in_progress(env)} in flight,"
                    f" {unfinished(env)} unfinished)"
                )
            else:
                private_redis.restart(down_seconds=1)
                print(f"  {at:5.1f} s  Redis restarted, its data gone")
        last_fault = time.monotonic()
        while unfinished(env) and time.monotonic() - last_fault < 120:
            time.sleep(1)
        settled = time.monotonic() - last_fault
        result = report(env, args.jobs)
    finally:
        stop_reconciling.set()
        for worker in workers:
            worker.stop()
        stack.stop()
        private_redis.stop()

    jobs = result["jobs"]
    stuck = jobs["queued"] + jobs["in_progress"]
    print(f"all settled {settled:.1f} s after the last fault" if not stuck else "NOT settled")
    print(
        f"jobs             completed {jobs['completed']}  failed {jobs['failed']}"
        f"  cancelled {jobs['cancelled']}  stuck {stuck}"
    )
    print(f"attempts         max {result['attempts_max']}  mean {result['attempts_avg']:.2f}")
    print(f"user messages    lost {result['lost_user_messages']}")
    print(
        f"usage            {result['usage_rows']} rows for {result['completed_replies']}"
        f" completed replies; replies without exactly one row:"
        f" {result['replies_without_exactly_one_usage']}"
    )
    print(f"reply text       duplicated or truncated: {result['duplicated_or_truncated']}")


if __name__ == "__main__":
    main()
