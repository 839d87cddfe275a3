"""Prometheus metrics as an operator scrapes them: Parley's own LLM and job metrics, queue
gauges computed from the database, and correct sums across several processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live import STARTUP_HANG_GUARD, work_until_idle
from tests.llm.factories import StandinModelFactory

ROOT = Path(__file__).resolve().parent.parent


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


@pytest.mark.django_db(transaction=True)
def test_llm_and_job_metrics_after_a_completion(client, auth_client, standin):
    StandinModelFactory(slug="metered", provider="anthropic")
    conversation = auth_client.post(
        "/api/v1/conversations/", {"model": "metered"}, format="json"
    ).json()["id"]
    auth_client.post(
        f"/api/v1/conversations/{conversation}/messages/", {"content": "hi"}, format="json"
    )
    before = scrape(client)
    assert before["parley_jobs_queued{queue=completions}"] == 1
    assert before["parley_jobs_oldest_queued_age_seconds{queue=completions}"] >= 0

    work_until_idle()
    after = scrape(client)
    labels = "model=metered,provider=anthropic"
    completed = "parley_llm_completions_total{model=metered,outcome=completed,provider=anthropic}"
    assert after[completed] - before.get(completed, 0) == 1
    assert after[f"parley_llm_output_tokens_total{{{labels}}}"] >= 24
    assert after[f"parley_llm_cost_usd_total{{{labels}}}"] > 0
    assert after[f"parley_llm_completion_duration_seconds_count{{{labels}}}"] >= 1
    assert after[f"parley_llm_time_to_first_token_seconds_count{{{labels}}}"] >= 1
    assert after["parley_jobs_finished_total{kind=llm.completion,status=completed}"] >= 1
    assert "parley_jobs_queued{queue=completions}" not in after  # nothing waiting now


PROCESS = """
import django
django.setup()
from llm import metrics
metrics.COMPLETIONS.labels(provider="openai", model="m", outcome="completed").inc({n})
"""


def test_metrics_add_up_across_processes(tmp_path):
    """Two worker-like processes count; one scrape of a web process sees the sum."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
    }
    for n in (2, 3):
        subprocess.run(
            [sys.executable, "-c", PROCESS.format(n=n)],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=STARTUP_HANG_GUARD,
        )
    scrape_code = (
        "import django;django.setup();from django.test import Client;"
        "print(Client(HTTP_HOST='localhost').get('/metrics').content.decode())"
    )
    output = subprocess.run(
        [sys.executable, "-c", scrape_code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=STARTUP_HANG_GUARD,
    ).stdout
    line = next(
        line
        for line in output.splitlines()
        if line.startswith("parley_llm_completions_total{") and 'model="m"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 5.0
