"""How much time Parley's provider layer adds to a streamed completion.

Starts the stand-in provider in a separate process (so it does not share our GIL), then for
each provider streams a 200-token reply N times two ways, alternating:

* raw:    a bare httpx client POSTs the same request and reads the SSE bytes to the end;
* parley: llm.providers (the official SDK, event parsing, our delta callback, result).

overhead = parley - raw for each pair; prints p50/p99 and a profile of where the time goes.

    .venv/bin/python bench/provider_overhead.py [--runs 300]
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm.providers import ChatMessage, ChatRequest, get_provider  # noqa: E402

REPLY_TOKENS = 200
MESSAGES = [ChatMessage("user", "Summarise the design of a queue-backed LLM gateway.")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_standin(port: int) -> subprocess.Popen:
    code = (
        "from llm.standin import StandinServer;"
        f"StandinServer('127.0.0.1', {port}, reply_tokens={REPLY_TOKENS}).serve_forever()"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("stand-in did not start")


def raw_request(name: str, base: str) -> tuple[str, dict, dict]:
    if name == "openai":
        body = {
            "model": "standin-chat",
            "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
            "max_tokens": 1024,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return f"{base}/v1/chat/completions", body, {"Authorization": "Bearer bench"}
    body = {
        "model": "standin-chat",
        "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
        "max_tokens": 1024,
        "stream": True,
    }
    return f"{base}/v1/messages", body, {"x-api-key": "bench", "anthropic-version": "2023-06-01"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def bench_provider(name: str, base: str, raw_client: httpx.Client, runs: int) -> None:
    provider = get_provider(
        name,
        api_key="bench",
        base_url=base + "/v1" if name == "openai" else base,
        timeout=30,
    )
    request = ChatRequest(model="standin-chat", messages=MESSAGES, max_tokens=1024)
    url, body, headers = raw_request(name, base)
    payload = json.dumps(body)

    def parley():
        deltas = []
        result = provider.complete(request, on_delta=deltas.append)
        assert result.output_tokens == REPLY_TOKENS and len(deltas) == REPLY_TOKENS

    def raw():
        with raw_client.stream(
            "POST",
            url,
            content=payload,
            headers={**headers, "content-type": "application/json"},
        ) as response:
            for _ in response.iter_bytes():
                pass

    for _ in range(20):  # warm connection pools and imports
        parley()
        raw()
    overheads, totals, raws = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        raw()
        t1 = time.perf_counter()
        parley()
        t2 = time.perf_counter()
        raws.append((t1 - t0) * 1000)
        totals.append((t2 - t1) * 1000)
        overheads.append(((t2 - t1) - (t1 - t0)) * 1000)
    print(
        f"{name:<9} raw stream p50 {statistics.median(raws):6.2f} ms | via provider layer p50 "
        f"{statistics.median(totals):6.2f} ms | overhead p50 {statistics.median(overheads):5.2f} ms, "
        f"p99 {percentile(overheads, 0.99):5.2f} ms ({statistics.median(overheads) / REPLY_TOKENS * 1000:.1f} us/token)"
    )

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        parley()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "tottime" in line)
    print(f"  where the time goes ({name}, 50 completions, top self-time):")
    for line in lines[start + 1 : start + 9]:
        parts = line.split(None, 5)
        if len(parts) == 6:
            print(f"    {float(parts[1]) / 50 * 1000:6.2f} ms/completion  {parts[5][-80:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    standin = start_standin(port)
    print(
        f"stand-in pid {standin.pid}; {args.runs} runs per provider; {REPLY_TOKENS}-token replies; cpus={os.cpu_count()}"
    )
    try:
        raw_client = httpx.Client(timeout=30)
        for name in ("openai", "anthropic"):
            bench_provider(name, base, raw_client, args.runs)
    finally:
        standin.terminate()
        standin.wait(timeout=5)


if __name__ == "__main__":
    main()
