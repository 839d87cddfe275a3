"""Where the time of a ``/v1/chat/completions`` call goes inside Parley's web process, stage
by stage, and what garbage collection costs it.

    DATABASE_URL=postgres://.../scratch REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python bench/gateway_stages.py [--seconds 15] [--connections 1]

The same placement as ``bench/gateway.py`` (which it reuses: the scratch database, the fake
upstream on CPU 1 with wrk, one uvicorn process with production settings on CPU 0), but the
process serves ``bench/stages_app.py``: Parley's application with timers around each stage
and a ``gc.callbacks`` hook. With one connection, requests follow one another, so each stage
is attributed to the request it overlaps: the table gives, per request, the time spent in
each stage (p50/p90/p99) and how often it ran. The record written after a response overlaps
the *next* request (it runs while that one is served), which is why it shows up in most
requests. The timers cost a little: latencies here are ~0.3 ms above ``bench/gateway.py``'s."""

import argparse
import bisect
import json
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway  # bench/gateway.py

WARMUP_S = 3


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def report(events: list, skip_s: float) -> str:
    requests = sorted((e for e in events if e[0] == "REQUEST"), key=lambda e: e[1])
    first = requests[0][1] if requests else 0.0
    requests = [r for r in requests if r[1] - first >= skip_s]
    stages = sorted((e for e in events if e[0] != "REQUEST"), key=lambda e: e[1])
    starts = [e[1] for e in stages]
    per_stage: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, int] = defaultdict(int)
    for _, started, ended, _ in requests:
        inside: dict[str, float] = defaultdict(float)
        # Stages that began up to 0.5 s earlier may still overlap (a record, a collection).
        for stage, s0, s1, _ in stages[bisect.bisect_left(starts, started - 0.5) :]:
            if s0 >= ended:
                break
            if s1 > started:
                inside[stage] += (min(s1, ended) - max(s0, started)) * 1000
                calls[stage] += 1
        for stage, ms in inside.items():
            per_stage[stage].append(ms)
    total = [(r[2] - r[1]) * 1000 for r in requests]
    n = len(requests)
    lines = [
        f"{n} requests after {skip_s:.0f} s of warm-up; request (first byte in to last byte out)"
        f" p50 {quantile(total, 0.5):.2f} ms, p90 {quantile(total, 0.9):.2f}, p99"
        f" {quantile(total, 0.99):.2f}, max {max(total):.1f}",
        "",
        "| stage (time inside the request) | in % of requests | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for stage, values in sorted(per_stage.items(), key=lambda kv: -quantile(kv[1], 0.5)):
        lines.append(
            f"| {stage} | {100 * len(values) / n:.1f} | {quantile(values, 0.5):.3f} |"
            f" {quantile(values, 0.9):.3f} | {quantile(values, 0.99):.3f} | {max(values):.2f} |"
        )
    lines += ["", "The slowest requests, and the stages over 1 ms inside each:"]
    slowest = sorted(requests, key=lambda r: r[1] - r[2])[:8]
    for _, started, ended, _ in slowest:
        inside = [
            f"{stage} {(min(s1, ended) - max(s0, started)) * 1000:.1f}"
            for stage, s0, s1, _ in stages[bisect.bisect_left(starts, started - 0.5) :]
            if s0 < ended and s1 > started and (min(s1, ended) - max(s0, started)) > 0.001
        ]
        lines.append(f"- {(ended - started) * 1000:.1f} ms: " + "; ".join(inside))
    collections = [e for e in events if e[0].startswith("gc generation")]
    for generation in (0, 1, 2):
        pauses = [
            (e[2] - e[1]) * 1000 for e in collections if e[0] == f"gc generation {generation}"
        ]
        if pauses:
            lines.append(
                f"gc generation {generation}: {len(pauses)} collections, p50"
                f" {quantile(pauses, 0.5):.2f} ms, max {max(pauses):.2f} ms"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--out", default="/tmp/parley-gateway-stages")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    harness = gateway.peers_harness()
    key = gateway.parley_prepare()
    env = gateway.parley_env()
    env["PYTHONPATH"] = f"{gateway.ROOT / 'bench'}:{gateway.ROOT}"
    env["STAGES_OUT"] = str(out / "stages.json")
    fake = parley = None
    try:
        fake = harness.start(
            [harness.TOOLS_PY, str(gateway.PEERS / "fake_openai.py")],
            harness.LOAD_CPU,
            env={"FAKE_DELAY_MS": "0"},
            log=str(out / "fake.log"),
        )
        harness.wait_http("http://127.0.0.1:18000/v1/models", 20)
        parley = harness.start(
            [
                str(Path(sys.executable).parent / "uvicorn"),
                "stages_app:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(gateway.PARLEY_PORT),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            harness.SERVER_CPU,
            env=env,
            cwd=str(gateway.ROOT),
            log=str(out / "parley.log"),
        )
        harness.wait_http(f"http://127.0.0.1:{gateway.PARLEY_PORT}/healthz", 60)
        harness.wait_idle(parley.pid, quiet_s=2)
        auth = f"Bearer {key}"
        with harness.CpuProbe({"server": parley.pid}) as probe:
            row = harness.run_wrk(
                gateway.PARLEY_URL, args.connections, WARMUP_S + args.seconds, auth=auth
            )
        cpu = probe.result
        print(
            f"wrk c={args.connections}: {row['rps']:.1f} req/s, p50 {row['p50_ms']:.2f} ms,"
            f" p99 {row['p99_ms']:.2f} ms (warm-up included); Parley used"
            f" {cpu['cpu_server_pct']}% of a core, CPU 0 was {cpu.get('cpu0_busy_pct')}% busy"
            f" (the difference is other processes), CPU 1 {cpu.get('cpu1_busy_pct')}%"
        )
        os.kill(parley.pid, signal.SIGUSR1)
        time.sleep(1)
    finally:
        harness.stop(parley)
        harness.stop(fake)
    events = json.loads((out / "stages.json").read_text())["events"]
    print(report(events, WARMUP_S))


if __name__ == "__main__":
    main()
