"""Traces as an operator sees them in their collector: Parley under uvicorn and an RQ worker,
each its own process with only the standard OTEL_* variables set, export over OTLP/HTTP to a
real endpoint; the POST, the job and the provider call are one trace."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from conftest import PASSWORD
from tests.live import free_port
from tests.llm.factories import StandinModelFactory
from tests.tracing.collector import OtlpCollector

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET_PROMPT = "zebra-secret-4242 in my prompt"
SERVER, CONSUMER, CLIENT = 2, 5, 3
WORKER = [
    sys.executable,
    "manage.py",
    "rqworker",
    "--burst",
    "--worker-class",
    "rq.worker.SimpleWorker",
]  # OTLP span kinds

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "connection.vendor != 'postgresql'",
        reason="the web and worker processes must share the test database",
    ),
]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(collector: OtlpCollector, standin_url: str, service: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings.test",
        DATABASE_URL=database_url(),
        STANDIN_BASE_URL=standin_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,  # the only switch needed
        OTEL_SERVICE_NAME=service,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    return env


def test_post_queue_worker_and_provider_share_one_trace(user, standin_server):
    entry = StandinModelFactory(slug="traced-model", provider_model="standin-chat")
    port = free_port()
    with OtlpCollector() as collector:
        web = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port)],
            cwd=ROOT,
            env=process_env(collector, standin_server.url, "parley-web"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as http:
                deadline = time.monotonic() + 60
                while True:  # wait until the server answers
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert web.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
                token = http.post(
                    "/api/v1/auth/token/", json={"email": user.email, "password": PASSWORD}
                ).json()["access"]
                http.headers["Authorization"] = f"Bearer {token}"
                conversation = http.post("/api/v1/conversations/", json={"model": entry.slug})
                posted = http.post(
                    f"/api/v1/conversations/{conversation.json()['id']}/messages/",
                    json={"content": SECRET_PROMPT},
                )
                assert posted.status_code == 202, posted.text

                worker = subprocess.run(
                    [*WORKER, "completions", "default"],
                    cwd=ROOT,
                    env=process_env(collector, standin_server.url, "parley-worker"),
                    capture_output=True,
                    timeout=120,
                )
                assert worker.returncode == 0, worker.stderr[-2000:]
                job = http.get(f"/api/v1/jobs/{posted.json()['job']['id']}/").json()
                assert job["status"] == "completed", job
        finally:
            web.terminate()
            web.wait(timeout=30)  # the SDK flushes what it holds at exit

        spans = collector.wait_for(
            lambda spans: (
                any(s.name.startswith("chat ") for s in spans)
                and any(s.kind == SERVER and "messages" in s.name for s in spans)
            )
        )

    post = next(s for s in spans if s.kind == SERVER and "messages" in s.name)
    job_span = next(s for s in spans if s.name == "job llm.completion")
    call = next(s for s in spans if s.name == "chat standin-chat")
    assert post.service == "parley-web" and job_span.service == "parley-worker"
    assert post.attributes.get("http.request.method", post.attributes.get("http.method")) == "POST"
    # One trace from the POST through the queue into the worker and the provider.
    assert post.trace_id == job_span.trace_id == call.trace_id
    web_span_ids = {s.span_id for s in spans if s.service == "parley-web"}
    assert job_span.parent_span_id in web_span_ids
    assert (job_span.kind, call.kind, call.parent_span_id) == (CONSUMER, CLIENT, job_span.span_id)
    assert job_span.attributes["parley.job.id"] == posted.json()["job"]["id"]

    # GenAI semantic conventions on the provider call.
    assert call.attributes["gen_ai.system"] == "openai"
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.request.model"] == "standin-chat"
    assert call.attributes["gen_ai.response.model"]
    assert call.attributes["gen_ai.usage.input_tokens"] > 0
    assert call.attributes["gen_ai.usage.output_tokens"] == 24
    assert call.attributes["gen_ai.response.finish_reasons"] == ["stop"]

    # Database and Redis spans from the official instrumentations, in both processes.
    in_trace = [s for s in spans if s.trace_id == post.trace_id]
    for service in ("parley-web", "parley-worker"):
        mine = [s for s in in_trace if s.service == service]
        assert any(s.attributes.get("db.system") == "postgresql" for s in mine), service
        assert any(s.attributes.get("db.system") == "redis" for s in mine), service

    # No prompt or reply text anywhere unless a setting asks for it.
    everything = json.dumps([s.attributes for s in spans])
    assert "zebra-secret-4242" not in everything
    assert token not in everything
