"""What open Server-Sent Events streams cost: opens N streams on queued replies against one
uvicorn process (as scripts/run and gunicorn's uvicorn workers serve them), then measures an
authenticated endpoint's latency and the server's memory with the streams open, and finally
lets a worker write the replies and checks that every stream received its `done`.

    .venv/bin/python bench/sse_streams.py [--streams 300]
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from completions import PY, Stack, bench_env, free_port, pct, wait_http


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def latency(client: httpx.AsyncClient, count: int = 200) -> list[float]:
    values = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/api/v1/auth/me/")
        assert response.status_code == 200
        values.append((time.perf_counter() - started) * 1000)
    return values


async def run(stack: Stack, base: str, server_pid: int, streams: int) -> None:
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=streams + 20)
    ) as client:
        token = (
            await client.post(
                "/api/v1/auth/token/",
                json={"email": "bench@example.com", "password": "bench-password-123"},
            )
        ).json()["access"]
        client.headers["Authorization"] = f"Bearer {token}"
        before = await latency(client)
        rss_before = rss_mb(server_pid)
        targets = []
        for i in range(streams):
            conversation = (
                await client.post("/api/v1/conversations/", json={"model": "standin-gpt"})
            ).json()["id"]
            posted = (
                await client.post(
                    f"/api/v1/conversations/{conversation}/messages/", json={"content": f"s{i}"}
                )
            ).json()
            targets.append(
                f"/api/v1/conversations/{conversation}/messages/{posted['assistant_message']['id']}/stream/"
            )

        opened = asyncio.Event()
        open_count = 0
        finals: list[str] = []

        async def follow(url: str) -> None:
            nonlocal open_count
            async with client.stream("GET", url) as response:
                open_count += 1
                if open_count == streams:
                    opened.set()
                async for line in response.aiter_lines():
                    if line.startswith("event: ") and line[7:] in ("done", "error"):
                        finals.append(line[7:])
                        return

        readers = [asyncio.create_task(follow(url)) for url in targets]
        await asyncio.wait_for(opened.wait(), 60)
        await asyncio.sleep(1)
        during = await latency(client)
        rss_during = rss_mb(server_pid)
        print(
            f"GET /auth/me/ with   0 streams open: p50 {statistics.median(before):6.1f} ms  p99 {pct(before, 0.99):6.1f} ms"
        )
        print(
            f"GET /auth/me/ with {streams} streams open: p50 {statistics.median(during):6.1f} ms  p99 {pct(during, 0.99):6.1f} ms"
        )
        print(
            f"server RSS {rss_before:.0f} MB -> {rss_during:.0f} MB ({(rss_during - rss_before) * 1024 / streams:.0f} KB per open stream)"
        )
        stack.start_workers(1)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        stack.stop_workers()
        print(
            f"all {len(finals)} streams received their final event ({finals.count('done')} done) {time.perf_counter() - started:.1f} s after a worker started"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=300)
    args = parser.parse_args()
    web_port, standin_port = free_port(), free_port()
    env = bench_env(standin_port)
    stack = Stack(env)
    try:
        stack.prepare(standin_port)
        server = stack.spawn(
            PY,
            "-m",
            "uvicorn",
            "project.asgi:application",
            "--port",
            str(web_port),
            "--no-access-log",
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_http(base + "/healthz")
        print(f"one uvicorn process; {args.streams} SSE streams; PostgreSQL; Redis")
        asyncio.run(run(stack, base, server.pid, args.streams))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
