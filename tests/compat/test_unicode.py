"""A lone surrogate (``"x\\ud800"``) anywhere in a ``/v1/`` body is a 400 in the emulated
API's shape, refused at the parse step over real HTTP: nothing recorded, nothing reserved."""

import httpx
import pytest

from budgets.models import Reservation
from llm.models import GatewayCall
from tests.test_unicode_input import LONE, encoded, variants

pytestmark = pytest.mark.django_db(transaction=True)


CHAT = {
    "model": "gpt-standin",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ],
    "stop": ["END"],
    "user": "customer-42",
    "metadata": {"team": "blue"},
    "stream": False,
}
MESSAGES = {
    "model": "gpt-standin",
    "max_tokens": 50,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ],
    "stop_sequences": ["END"],
    "metadata": {"user_id": "customer-42"},
}
RESPONSES = {
    "model": "gpt-standin",
    "instructions": "Be brief.",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
    "user": "customer-42",
    "metadata": {"team": "blue"},
    "store": False,
}
ENDPOINTS = [
    ("/v1/chat/completions", "openai", CHAT),
    ("/v1/responses", "openai", RESPONSES),
    ("/v1/responses", "openai", {**RESPONSES, "store": True, "input": "Hi"}),
    ("/v1/messages", "anthropic", MESSAGES),
]


@pytest.fixture
def client(parley, api_key):
    with httpx.Client(base_url=parley, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {api_key.secret}"
        yield client


@pytest.mark.parametrize(("url", "shape", "base"), ENDPOINTS)
def test_a_lone_surrogate_in_any_field_is_a_400_in_the_api_shape(client, url, shape, base):
    wrong = {}
    cases = list(variants(base))
    assert len(cases) >= 7
    for where, body in cases:
        response = client.post(
            url, content=encoded(body), headers={"content-type": "application/json"}
        )
        payload = response.json()
        error = payload.get("error") or {}
        if shape == "anthropic":
            ok = payload.get("type") == "error" and error.get("type") == "invalid_request_error"
        else:
            ok = error.get("type") == "invalid_request_error" and error["code"] == "invalid_unicode"
        if response.status_code != 400 or not ok or "not valid Unicode" not in error["message"]:
            wrong[where] = (response.status_code, payload)
    assert wrong == {}
    assert GatewayCall.objects.filter(status="completed").count() == 0
    assert not Reservation.objects.exists()  # nothing reserved, so nothing held for good


def test_the_user_field_is_refused_not_served(client):
    """``user`` used to be served, fail to be recorded, and leave its tokens reserved."""
    response = client.post(
        "/v1/chat/completions",
        content=encoded({**CHAT, "user": LONE}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] is None
    assert not Reservation.objects.exists()
