"""/v1/ calls through the one call lifecycle (llm/lifecycle.py): calls answered in the request
(store: false, chat completions, messages) are tried again and fall back under one policy;
stored responses get a call record like any other /v1/ call; a settle the database refuses
still records the call and ends its hold. Real SDKs, uvicorn, stand-in, RQ workers."""

import time

import httpx
import pytest

from budgets.models import BudgetLedger, Reservation, ReservationStatus
from budgets.periods import period_start
from budgets.services import budget_set
from llm.models import GatewayCall, Message, ModelFallback, Usage
from project.money import micros
from tests.compat.conftest import faulty_model, recorded_call
from tests.compat.test_responses import with_worker
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = [{"role": "user", "content": "Tell me about Parley"}]


def test_an_unstored_response_is_tried_again_after_a_transient_failure(openai_client, standin):
    flaky = StandinModelFactory(slug="gpt-flaky", provider="openai", provider_model="standin-flaky")
    before = {id(request) for request in standin.received}  # it keeps the last 100 only
    response = openai_client.responses.create(
        model=flaky.slug, input="A question asked once by the lifecycle test", store=False
    )
    assert response.status == "completed"
    sent = [r.body["model"] for r in standin.received if id(r) not in before]
    assert sent == ["standin-flaky", "standin-flaky"]  # a 429, then the answer
    call = recorded_call()
    assert (call.status, call.model.slug, call.output_tokens) == ("completed", flaky.slug, 24)


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_model_falls_back_in_the_request(openai_client, catalog, stream):
    failing = faulty_model("openai", "529")
    ModelFallback.objects.create(model=failing, fallback=catalog["anthropic"], position=1)
    if stream:
        chunks = list(
            openai_client.chat.completions.create(model=failing.slug, messages=PROMPT, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = (
            openai_client.chat.completions.create(model=failing.slug, messages=PROMPT)
            .choices[0]
            .message.content
        )
    assert text.startswith('You said: "Tell me about Parley"')
    call = recorded_call()
    # Written, priced and counted as the fallback that answered.
    assert (call.status, call.model_requested, call.model) == (
        "completed",
        failing.slug,
        catalog["anthropic"],
    )
    assert Usage.objects.get().model == catalog["anthropic"]


def test_a_stored_response_gets_a_call_record(openai_client, api_key):
    response = with_worker(
        lambda: openai_client.responses.create(model="gpt-standin", input="Stored, please")
    )
    assert response.status == "completed"
    call = recorded_call()
    reply = Message.objects.get(role="assistant")
    assert (call.endpoint, call.status, call.http_status) == ("responses", "completed", 200)
    assert (call.api_key_id, call.model.slug, call.model_requested) == (
        api_key.api_key.pk,
        "gpt-standin",
        "gpt-standin",
    )
    assert (call.input_tokens, call.output_tokens, call.cost_micros) == (
        reply.input_tokens,
        reply.output_tokens,
        reply.cost_micros,
    )
    assert call.usage == Usage.objects.get(message=reply)  # one Usage row, shared
    assert call.request_id


def test_a_call_whose_settle_the_database_refuses_is_still_recorded_and_its_hold_ended(
    parley, api_key, user
):
    budget = budget_set(user=user, period="daily", limit_micros=micros("5"))
    slow = StandinModelFactory(
        slug="gpt-slow", provider="openai", provider_model="standin-tps40-len40"
    )
    with httpx.Client(base_url=parley, timeout=20) as http:
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key.secret}"},
            json={"model": slow.slug, "messages": PROMPT, "stream": True},
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            next(line for line in lines if '"content":"' in line)
            # Admitted and streaming: now the ledger no longer holds its amount, so settling
            # would go below zero and the database's constraint refuses it.
            BudgetLedger.objects.filter(
                budget=budget, period_start=period_start(budget.period)
            ).update(reserved_micros=0, reserved_tokens=0)
            body = "".join(lines)
    assert "[DONE]" in body  # the client got its whole answer

    call = recorded_call()
    assert (call.status, call.output_tokens) == ("completed", 40)
    assert Usage.objects.get().cost_micros == call.cost_micros > 0
    deadline = time.monotonic() + 5
    while Reservation.objects.filter(status=ReservationStatus.HELD).exists():
        assert time.monotonic() < deadline, "the hold was never ended"
        time.sleep(0.05)
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.reserved_micros == 0 and ledger.reserved_tokens == 0
    assert ledger.spent_micros == call.cost_micros  # the spend still counts
    assert GatewayCall.objects.count() == 1
