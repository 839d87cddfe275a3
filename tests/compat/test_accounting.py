"""Every /v1/ call passes the same gate as a conversation reply (model access, rate limits,
budgets) and is accounted: a record staff see, a Usage row, the budget settled to the cost,
metrics — also when the client goes away mid-stream. And no database connection is held
while a call waits on its provider."""

import itertools
import json
import threading
import time
import uuid

import httpx
import openai
import pytest
from django.db import connection
from prometheus_client import REGISTRY

from budgets.selectors import budget_statuses
from budgets.services import budget_set, rate_limit_set
from llm.models import GatewayCall, ModelAccess, Usage
from project.money import micros
from tests.compat.conftest import faulty_model, recorded_call, recorded_calls
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = [{"role": "user", "content": "Tell me about Parley"}]


def test_budget_refusal_is_a_429_and_a_settled_budget_counts_the_cost(openai_client, user):
    budget = budget_set(user=user, period="monthly", limit_micros=micros("0.01"))
    completion = openai_client.chat.completions.create(
        model="gpt-standin", messages=PROMPT, max_tokens=100
    )
    call = recorded_call()
    (status,) = budget_statuses(user=user)[None]
    assert status.id == budget.pk
    assert status.spent_micros == call.cost_micros and status.reserved_micros == 0
    assert status.spent_tokens == completion.usage.total_tokens

    # Nothing left for another call.
    budget_set(user=user, period="monthly", limit_micros=call.cost_micros)
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    assert caught.value.body["code"] == "budget_exceeded"
    # Waiting does not refill a budget: no Retry-After, and the SDKs are told not to retry.
    assert "retry-after" not in caught.value.response.headers
    assert caught.value.response.headers["x-should-retry"] == "false"
    refused = next(c for c in recorded_calls(2) if c.status != "completed")
    assert (refused.status, refused.http_status, refused.error_code) == (
        "refused",
        429,
        "budget_exceeded",
    )
    assert Usage.objects.count() == 1  # the refused call cost nothing


def test_rate_limit_is_a_429_with_retry_after_and_headers(openai_client, api_key):
    rate_limit_set(api_key=api_key.api_key, requests_per_minute=1, tokens_per_minute=None)
    first = openai_client.chat.completions.with_raw_response.create(
        model="gpt-standin", messages=PROMPT
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_model_access_restricts_calls_and_the_models_list(openai_client, user, catalog):
    access = ModelAccess.objects.create(user=user)
    access.allowed_models.set([catalog["anthropic"]])
    assert [m.id for m in openai_client.models.list()] == ["claude-standin"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    assert caught.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-standin")


def test_text_is_kept_only_when_the_setting_says(openai_client, settings):
    settings.LLM_GATEWAY_STORE_TEXT = True
    completion = openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    call = recorded_call()
    assert call.reply == completion.choices[0].message.content
    assert call.prompt == {"system": "", "messages": PROMPT}


def _counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_calls_count_in_the_metrics(openai_client):
    labels = {"endpoint": "chat.completions", "model": "gpt-standin", "status": "completed"}
    before = _counter("parley_gateway_calls_total", **labels)
    tokens_before = _counter(
        "parley_llm_output_tokens_total", provider="openai", model="gpt-standin"
    )
    openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    recorded_call()  # metrics are counted when the call is recorded
    assert _counter("parley_gateway_calls_total", **labels) == before + 1
    assert (
        _counter("parley_llm_output_tokens_total", provider="openai", model="gpt-standin")
        == tokens_before + 24
    )


def test_a_client_that_goes_away_mid_stream_is_accounted(parley, api_key):
    slow = StandinModelFactory(
        slug="gpt-slow", provider="openai", provider_model="standin-tps20-len200"
    )
    with httpx.Client(base_url=parley, timeout=10) as http:
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key.secret}"},
            json={"model": slow.slug, "messages": PROMPT, "stream": True},
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = list(itertools.islice(lines, 8))
            assert any('"content":"' in line for line in seen)
        # the connection is closed here, mid-reply
    [call] = recorded_calls(1, timeout=10)
    assert (call.status, call.http_status) == ("cancelled", 499)
    assert 0 < call.output_tokens < 200  # estimated from what was streamed
    assert Usage.objects.get().cost_micros == call.cost_micros > 0


@pytest.fixture
def small_pool():
    """A connection pool of 4 for this test. With the default 10, a stream that kept its
    connection could not exhaust it: the threads that run the gateway's database work
    (asyncio's default executor) are fewer than 10 on a small machine, and hold at most one
    connection each. Without a pool (SQLite), the default per-thread connections."""
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if not pool:
        yield 10
        return
    before = pool.get("max_size")
    connection.close()
    connection.close_pool()
    pool["max_size"] = 4
    yield 4
    connection.close()
    connection.close_pool()
    if before is None:
        pool.pop("max_size")
    else:
        pool["max_size"] = before


def test_streams_waiting_on_the_provider_hold_no_database_connection(
    small_pool, parley, api_key, auth_client, standin
):
    """More streams waiting on a slow provider than the connection pool holds, and other
    requests still get a connection at once."""
    streams = small_pool + 4
    slow = StandinModelFactory(
        slug="gpt-ttft", provider="openai", provider_model="standin-ttft3000-len3"
    )
    # Marks this test's requests among those the session's stand-in has recorded.
    marker = f"Waiting {uuid.uuid4().hex}"
    waiting = [{"role": "user", "content": marker}]
    results, errors = [], []
    barrier = threading.Barrier(streams + 1)

    def stream_one():
        try:
            with openai.OpenAI(
                base_url=f"{parley}/v1", api_key=api_key.secret, max_retries=0
            ) as client:
                barrier.wait()
                chunks = list(
                    client.chat.completions.create(model=slow.slug, messages=waiting, stream=True)
                )
                results.append(
                    "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                )
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stream_one) for _ in range(streams)]
    for thread in threads:
        thread.start()
    barrier.wait()
    # Every stream has been admitted and is waiting on the provider for its first token.
    deadline = time.monotonic() + 60
    while sum(marker in json.dumps(r.body) for r in standin.received) < streams:
        assert time.monotonic() < deadline, "the streams never reached the provider"
        time.sleep(0.02)
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    started = time.monotonic()
    me = httpx.get(f"{parley}/api/v1/auth/me/", headers={"Authorization": token}, timeout=10)
    assert me.status_code == 200
    assert time.monotonic() - started < 1.5  # not queued behind the waiting streams
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    assert len(results) == streams and all(results)
    assert {c.status for c in recorded_calls(streams)} == {"completed"}


def test_provider_failure_releases_the_budget(openai_client, user):
    budget_set(user=user, period="monthly", limit_micros=micros("1"))
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(
            model=faulty_model("openai", "500").slug, messages=PROMPT
        )
    (status,) = budget_statuses(user=user)[None]
    assert status.spent_micros == 0 and status.reserved_micros == 0


def test_staff_see_every_call_in_the_admin_read_only(openai_client, staff_user, client):
    openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="gpt-nope", messages=PROMPT)
    recorded_calls(2)
    client.force_login(staff_user)
    page = client.get("/admin/llm/gatewaycall/")
    assert page.status_code == 200
    for call in GatewayCall.objects.all():
        assert call.request_id in page.content.decode()
    assert "gpt-nope" in page.content.decode()
    detail = client.get(f"/admin/llm/gatewaycall/{GatewayCall.objects.first().pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.get("/admin/llm/gatewaycall/add/").status_code == 403


def test_calls_count_in_the_dashboard_and_the_usage_report(
    openai_client, staff_user, client, user, auth_client
):
    openai_client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    call = recorded_call()
    client.force_login(staff_user)
    page = client.get("/admin/dashboard/")
    assert page.status_code == 200
    spender = next(s for s in page.context["spenders"] if s["email"] == user.email)
    assert spender["cost_micros"] == call.cost_micros and spender["requests"] == 1
    report = auth_client.get("/api/v1/usage/").json()
    assert report["total"]["requests"] == 1
    assert report["total"]["output_tokens"] == call.output_tokens
