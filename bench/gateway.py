"""Parley's /v1/chat/completions side by side with LiteLLM's proxy, in one run, in front of the
same fake upstream (../shared/peers/fake_openai.py), with the same pinning and load tools.

    DATABASE_URL=postgres://.../scratch REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python bench/gateway.py [--out DIR] [--no-litellm]

Needs what ../shared/peers/run_all.sh installs: wrk, taskset, /tmp/bench-venv-tools (starlette,
uvicorn, aiohttp: the upstream and the stream client) and /tmp/bench-venv-litellm (LiteLLM, a
measuring peer only, never a Parley dependency). Without LiteLLM it measures Parley alone and
says so. Point DATABASE_URL at a scratch database: the run migrates it and writes a catalog
entry `gpt-4o-mini` (provider openai_compatible, base_url http://127.0.0.1:18000/v1), a user and
an API key into it.

Placement (2 cores, as in the peers' RESULTS.md): the server under test (LiteLLM, or Parley's
one uvicorn process) on CPU 0; wrk / the stream client and the fake upstream on CPU 1.
PostgreSQL and Redis (Parley's per-call reads and writes) are not pinned; their CPU is not in
"server CPU" — the table says so.

Measured, for direct (the upstream alone), LiteLLM and Parley:
- non-streaming c=1: p50/p99 latency; added = through the gateway minus direct;
- streaming c=1: time to first byte and to [DONE]; per-chunk cost =
  (added total - added TTFB) / chunks, the peers' formula;
- non-streaming c=32: requests/s with the server on one core (= req/s per core) and server CPU
  ms per request;
- web process RSS after start and after the runs;
- Parley only: 500 streams open at once on the one web process (slow upstream, ~10 s each):
  errors, chunks, peak RSS.
"""

import argparse
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("PEERS_DIR", ROOT.parent / "shared" / "peers"))
PARLEY_PORT = 18100
PARLEY_URL = f"http://127.0.0.1:{PARLEY_PORT}/v1/chat/completions"
MODEL_SLUG = "gpt-4o-mini"  # what the peers' wrk script and stream client ask for
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
REPS = int(os.environ.get("BENCH_REPS", "2"))
STREAMS_AT_ONCE = int(os.environ.get("BENCH_STREAMS_AT_ONCE", "500"))


def peers_harness():
    """The peers' bench.py as a module: process, CPU and RSS probes, wrk and stream runners."""
    spec = importlib.util.spec_from_file_location("peers_bench", PEERS / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Parley's database and Redis, taken out of the environment the peers' harness hands to every
# process it starts: LiteLLM reads DATABASE_URL too (and then wants Prisma and a schema).
SERVICES = {
    name: os.environ.pop(name) for name in ("DATABASE_URL", "REDIS_URL") if name in os.environ
}


def parley_env() -> dict:
    return {
        **SERVICES,
        "DJANGO_SETTINGS_MODULE": "project.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(32),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # LiteLLM runs with LITELLM_LOG=ERROR (no access log); Parley likewise logs warnings only.
        "LOG_LEVEL": "WARNING",
        "STANDIN_BASE_URL": "",
        "PYTHONPATH": str(ROOT),
    }


def parley_prepare() -> str:
    """Migrate the scratch database, point the catalog at the fake upstream, return an API key."""
    env = dict(os.environ, **parley_env())
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    script = f"""
from decimal import Decimal
from accounts.models import User
from accounts.services import api_key_create
from llm.models import LLMModel
LLMModel.objects.update_or_create(slug={MODEL_SLUG!r}, defaults=dict(
    display_name="fake upstream", provider="openai_compatible", provider_model={MODEL_SLUG!r},
    base_url="http://127.0.0.1:18000/v1", is_standin=False, enabled=True,
    context_window=128000, max_output_tokens=16384,
    input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.60")))
user, _ = User.objects.get_or_create(email="bench@parley.local")
print("KEY", api_key_create(owner=user, name="bench").secret)
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("KEY "))


BURST_CLIENT = r"""
import asyncio, json, sys, time, aiohttp
url, auth, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                   "messages": [{"role": "user", "content": "hello"}]}).encode()
async def one(session, opened):
    async with session.post(url, data=body, headers={"Authorization": auth,
                                                     "Content-Type": "application/json"}) as r:
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        chunks, done = 0, False
        async for raw in r.content:
            line = raw.decode()
            if line.startswith("data: [DONE]"):
                done = True
                break
            if line.startswith("data:"):
                if chunks == 0:
                    opened.append(time.perf_counter())
                json.loads(line[5:])
                chunks += 1
        if not done:
            raise RuntimeError("no [DONE]")
        return chunks
async def main():
    opened = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(s, opened) for _ in range(n)), return_exceptions=True)
        elapsed = time.perf_counter() - t0
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    chunks = [r for r in results if not isinstance(r, BaseException)]
    print("BURSTJSON " + json.dumps({"streams": n, "completed": len(chunks), "errors": len(errors),
          "error_samples": errors[:3], "chunks_min": min(chunks, default=0),
          "chunks_total": sum(chunks), "elapsed_s": round(elapsed, 2),
          "all_open_after_s": round(max(opened) - t0, 2) if opened else None}))
asyncio.run(main())
"""


def run_burst(harness, auth: str, streams: int, parley_pid: int) -> dict:
    """``streams`` streams opened at once against a slow upstream; peak RSS sampled meanwhile."""
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            harness.LOAD_CPU,
            harness.TOOLS_PY,
            "-c",
            BURST_CLIENT,
            PARLEY_URL,
            auth,
            str(streams),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, harness.rss_kb(parley_pid)[0])
        time.sleep(0.2)
    out = proc.communicate(timeout=180)[0]
    line = next(line for line in out.splitlines() if line.startswith("BURSTJSON "))
    result = json.loads(line[len("BURSTJSON ") :])
    result["rss_peak_mib"] = round(peak / 1024, 1)
    return result


def mean(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows if row.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/parley-gateway-bench")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    harness = peers_harness()
    litellm = not args.no_litellm and Path(harness.LITELLM_BIN).exists()
    if not litellm:
        print("LiteLLM is not measured in this run (not installed or --no-litellm).")

    key = parley_prepare()
    auth = f"Bearer {key}"
    proxy_auth = f"Bearer {harness.MASTER_KEY}"
    targets = [("direct", harness.FAKE_URL, None)]
    if litellm:
        targets.append(("litellm", harness.PROXY_URL, proxy_auth))
    targets.append(("parley", PARLEY_URL, auth))

    fake = proxy = parley = None
    results: dict[str, dict[str, list[dict]]] = {}
    memory: dict[str, dict] = {}
    burst = None

    def start_fake(env: dict) -> None:
        nonlocal fake
        harness.stop(fake)
        fake = harness.start(
            [harness.TOOLS_PY, str(PEERS / "fake_openai.py")],
            harness.LOAD_CPU,
            env=env,
            log=str(out / "fake.log"),
        )
        harness.wait_http("http://127.0.0.1:18000/v1/models", 20)

    try:
        start_fake({"FAKE_DELAY_MS": "0"})
        if litellm:
            t0 = time.monotonic()
            proxy = harness.start(
                [
                    harness.LITELLM_BIN,
                    "--config",
                    str(PEERS / "litellm_config.yaml"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "4000",
                ],
                harness.SERVER_CPU,
                env=harness.LITELLM_ENV,
                cwd="/tmp",
                log=str(out / "litellm.log"),
            )
            harness.wait_http("http://127.0.0.1:4000/health/liveliness", 120)
            harness.wait_idle(proxy.pid)
            memory["litellm"] = {
                "start_s": round(time.monotonic() - t0, 1),
                "rss_start_mib": round(harness.rss_kb(proxy.pid)[0] / 1024, 1),
            }
        t0 = time.monotonic()
        parley = harness.start(
            [
                str(Path(sys.executable).parent / "uvicorn"),
                "project.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(PARLEY_PORT),
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-keep-alive",
                "30",
            ],
            harness.SERVER_CPU,
            env=parley_env(),
            cwd=str(ROOT),
            log=str(out / "parley.log"),
        )
        harness.wait_http(f"http://127.0.0.1:{PARLEY_PORT}/healthz", 60)
        harness.wait_idle(parley.pid, quiet_s=2)
        memory["parley"] = {
            "start_s": round(time.monotonic() - t0, 1),
            "rss_start_mib": round(harness.rss_kb(parley.pid)[0] / 1024, 1),
        }
        pids = {"fake": fake.pid, "server": None}
        server_pid = {"litellm": proxy.pid if proxy else None, "parley": parley.pid}

        def measure(case: str, run) -> None:
            for rep in range(1, REPS + 1):
                for name, url, credential in targets:
                    pids["server"] = server_pid.get(name)
                    with harness.CpuProbe(pids) as probe:
                        row = run(url, credential)
                    row.update(probe.result)
                    row["server_cpu_ms_per_request"] = (
                        row["cpu_server_pct"] * 10 / row["rps"]
                        if row.get("cpu_server_pct") is not None and row["rps"]
                        else None
                    )
                    results.setdefault(case, {}).setdefault(name, []).append(row)
                    print(
                        f"  {case} {name} rep{rep}: rps={row['rps']:.1f} p50={row['p50_ms']:.2f}"
                        f" p99={row['p99_ms']:.2f} errors={row['errors']}"
                        + (f" ttfb50={row['ttfb_p50_ms']:.2f}" if "ttfb_p50_ms" in row else ""),
                        flush=True,
                    )

        def wrk(conns: int):
            def run(url, credential):
                harness.run_wrk(url, conns, WARMUP, auth=credential)  # warm-up, discarded
                return harness.run_wrk(url, conns, DURATION, auth=credential)

            return run

        def stream(conc: int):
            def run(url, credential):
                return harness.run_stream(url, conc, DURATION, WARMUP, auth=credential)

            return run

        measure("nonstream-c1", wrk(1))
        measure("stream-c1", stream(1))
        measure("nonstream-c32", wrk(32))
        for name, pid in server_pid.items():
            if pid:
                rss, hwm = harness.rss_kb(pid)
                memory[name].update(
                    rss_after_mib=round(rss / 1024, 1), hwm_mib=round(hwm / 1024, 1)
                )
        if litellm:
            harness.stop(proxy)
            proxy = None
        if STREAMS_AT_ONCE:  # BENCH_STREAMS_AT_ONCE=0 skips it (short runs)
            # 500 streams at once on Parley's one process: a slow upstream keeps them all open.
            start_fake({"FAKE_DELAY_MS": "500", "FAKE_CHUNK_DELAY_MS": "500"})
            burst = run_burst(harness, auth, STREAMS_AT_ONCE, parley.pid)
            memory["parley"]["rss_after_burst_mib"] = round(harness.rss_kb(parley.pid)[0] / 1024, 1)
            print(f"  burst: {burst}", flush=True)
    finally:
        harness.stop(parley)
        harness.stop(proxy)
        harness.stop(fake)

    summary = {"results": results, "memory": memory, "burst": burst, "litellm": litellm}
    (out / "gateway.json").write_text(json.dumps(summary, indent=1))
    print(report(summary))


def report(summary: dict) -> str:
    results, memory, burst = summary["results"], summary["memory"], summary["burst"]
    systems = ["litellm", "parley"] if summary["litellm"] else ["parley"]

    def m(case, name, key):
        return mean(results[case][name], key)

    def added(case, name, key):
        return m(case, name, key) - m(case, "direct", key)

    chunks = m("stream-c1", "direct", "chunks_per_stream")
    figures = {
        "added p50 ms, non-streaming c=1": lambda s: added("nonstream-c1", s, "p50_ms"),
        "added p99 ms, non-streaming c=1": lambda s: added("nonstream-c1", s, "p99_ms"),
        "added TTFB p50 ms, streaming c=1": lambda s: added("stream-c1", s, "ttfb_p50_ms"),
        "added total p50 ms, streaming c=1": lambda s: added("stream-c1", s, "p50_ms"),
        "per streamed chunk ms": lambda s: (
            (added("stream-c1", s, "p50_ms") - added("stream-c1", s, "ttfb_p50_ms")) / chunks
        ),
        "req/s on one core, non-streaming c=32": lambda s: m("nonstream-c32", s, "rps"),
        "server CPU ms per request, c=32": lambda s: m(
            "nonstream-c32", s, "server_cpu_ms_per_request"
        ),
        "p50 ms at c=32": lambda s: m("nonstream-c32", s, "p50_ms"),
        "errors (all runs)": lambda s: sum(
            r["errors"] for case in results.values() for r in case[s]
        ),
        "RSS MiB after start": lambda s: memory[s]["rss_start_mib"],
        "RSS MiB after the runs": lambda s: memory[s]["rss_after_mib"],
    }
    header = "| figure | " + " | ".join(systems)
    header += " | Parley / LiteLLM |" if len(systems) == 2 else " |"
    lines = [header, "|" + "---|" * (len(systems) + 1 + (len(systems) == 2))]
    for label, figure in figures.items():
        values = [figure(s) for s in systems]
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in values]
        if len(systems) == 2:
            ratio = values[1] / values[0] if values[0] else float("nan")
            cells.append(f"{ratio:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    direct = [
        f"direct upstream: c=1 p50 {m('nonstream-c1', 'direct', 'p50_ms'):.2f} ms,"
        f" p99 {m('nonstream-c1', 'direct', 'p99_ms'):.2f} ms; stream c=1 TTFB p50"
        f" {m('stream-c1', 'direct', 'ttfb_p50_ms'):.2f} ms, total p50"
        f" {m('stream-c1', 'direct', 'p50_ms'):.2f} ms, {chunks:.0f} chunks"
    ]
    if burst:
        direct.append(
            f"Parley, {burst['streams']} streams at once on one process: {burst['completed']}"
            f" completed, {burst['errors']} errors, all open after {burst['all_open_after_s']} s,"
            f" {burst['elapsed_s']} s in all, peak RSS {burst['rss_peak_mib']} MiB"
        )
    return "\n".join([*lines, "", *direct])


if __name__ == "__main__":
    main()
