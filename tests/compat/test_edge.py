"""The edge of /v1/, once for every endpoint, over real HTTP: every error in the emulated API's
JSON shape (unknown path, wrong method, body too large, rate limits, a crash under DEBUG),
trailing slashes, CORS preflights, and a request that can never pass a per-minute token limit
told so instead of being asked to retry."""

import json

import httpx
import openai
import pytest
from django.test import RequestFactory
from django.views import debug

from budgets.services import rate_limit_set
from llm.models import GatewayCall
from project.middleware import ApiErrorShapeMiddleware

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = [{"role": "user", "content": "Hello"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def client(parley, api_key):
    with httpx.Client(base_url=parley, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {api_key.secret}"
        yield client


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def anthropic_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


def test_unknown_paths_are_404_in_the_api_shape(client):
    error = openai_error(client.post("/v1/audio/speech", json={"input": "x"}), 404)
    assert error["message"] == "Invalid URL (POST /v1/audio/speech)."
    assert error["type"] == "invalid_request_error"
    openai_error(client.get("/v1/"), 404)
    openai_error(client.get("/v1/models/a/b"), 404)
    error = anthropic_error(client.post("/v1/messages/batches", headers=ANTHROPIC), 404)
    assert error["type"] == "not_found_error"


def test_a_trailing_slash_is_the_same_endpoint(client, openai_client):
    plain = client.get("/v1/models")
    slashed = client.get("/v1/models/")
    assert slashed.status_code == plain.status_code == 200
    assert slashed.json() == plain.json()
    assert client.get("/v1/models/gpt-standin/").json()["id"] == "gpt-standin"
    response = client.post(
        "/v1/chat/completions/", json={"model": "gpt-standin", "messages": PROMPT}
    )
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST, OPTIONS"),
        ("DELETE", "/v1/models", "GET, OPTIONS"),
        ("PUT", "/v1/responses/resp_1", "GET, DELETE, OPTIONS"),
        ("GET", "/v1/responses/resp_1/cancel", "POST, OPTIONS"),
    ],
)
def test_a_wrong_method_is_405_with_allow(client, method, path, allow):
    response = client.request(method, path)
    error = openai_error(response, 405)
    assert response.headers["allow"] == allow
    assert error["code"] == "method_not_allowed"


def test_a_wrong_method_on_messages_is_405_in_anthropic_shape(client):
    response = client.get("/v1/messages")
    anthropic_error(response, 405)
    assert response.headers["allow"] == "POST, OPTIONS"


def test_cors_preflight_is_answered_when_configured(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
    }
    response = client.options("/v1/chat/completions", headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    allowed = response.headers["access-control-allow-headers"]
    assert "authorization" in allowed and "*" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    # An origin not configured gets no grant (the browser then refuses the call).
    stranger = client.options(
        "/v1/messages", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers
    # And the real call exposes the headers a browser client reads.
    call = client.post(
        "/v1/chat/completions",
        json={"model": "gpt-standin", "messages": PROMPT},
        headers={"Origin": "https://app.example"},
    )
    assert call.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-ratelimit-remaining-requests" in call.headers["access-control-expose-headers"]


def test_a_body_over_the_limit_is_413_in_the_api_shape(client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    big = {"model": "gpt-standin", "messages": [{"role": "user", "content": "x" * 2000}]}
    error = openai_error(client.post("/v1/chat/completions", json=big), 413)
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"
    error = anthropic_error(client.post("/v1/messages", json=big, headers=ANTHROPIC), 413)
    assert error["type"] == "request_too_large"


def test_rate_limit_429_carries_retry_after_and_the_ratelimit_headers(client, api_key):
    rate_limit_set(api_key=api_key.api_key, requests_per_minute=1, tokens_per_minute=None)
    body = {"model": "gpt-standin", "messages": PROMPT}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    refused = client.post("/v1/chat/completions", json=body)
    error = openai_error(refused, 429)
    assert error["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "1"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_request_over_the_whole_token_limit_is_told_it_can_never_pass(
    openai_client, api_key, parley
):
    rate_limit_set(api_key=api_key.api_key, requests_per_minute=None, tokens_per_minute=50)
    retrying = openai_client.with_options(max_retries=3)
    with pytest.raises(openai.RateLimitError) as caught:
        retrying.chat.completions.create(model="gpt-standin", messages=PROMPT, max_tokens=500)
    response = caught.value.response
    assert caught.value.body["code"] == "request_too_large"
    assert "never" in caught.value.body["message"]
    assert "retry-after" not in response.headers
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-ratelimit-limit-tokens"] == "50"
    # The SDK obeyed: one attempt, not four.
    assert GatewayCall.objects.filter(error_code="request_too_large").count() == 1


@pytest.mark.parametrize(
    ("headers", "shape"), [({}, "openai"), (ANTHROPIC, "anthropic")], ids=["openai", "anthropic"]
)
def test_a_crash_under_debug_leaves_as_json_not_the_debug_page(settings, headers, shape):
    """Django's technical 500 page (DEBUG on, as under scripts/run) never reaches a /v1/
    client: the edge replaces it with the API's error, keeping nothing of the traceback."""
    settings.DEBUG = True
    path = "/v1/messages" if shape == "anthropic" else "/v1/chat/completions"
    request = RequestFactory().post(path, headers=headers)
    try:
        raise RuntimeError("secret detail")
    except RuntimeError as exc:
        page = debug.technical_500_response(request, type(exc), exc, exc.__traceback__)
    assert page["Content-Type"].startswith("text/html")
    response = ApiErrorShapeMiddleware(lambda r: page)(request)
    assert response.status_code == 500
    body = json.loads(response.content)
    assert "secret detail" not in response.content.decode()
    if shape == "anthropic":
        assert body["error"]["type"] == "api_error"
    else:
        assert body["error"]["type"] == "server_error"


def test_the_debug_404_page_is_not_served_under_v1(client, settings):
    settings.DEBUG = True
    response = client.get("/v1/nothing-here")
    openai_error(response, 404)
    assert "URLconf" not in response.text
