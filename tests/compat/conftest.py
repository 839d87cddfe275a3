"""A live Parley (uvicorn, the ASGI app as production serves it) with stand-in catalog models
of both provider families, and the official SDKs pointed at it with a Parley API key."""

import time

import anthropic
import openai
import pytest

from accounts.services import api_key_create
from tests.live import asgi_server
from tests.llm.factories import StandinModelFactory

FAMILIES = ["openai", "anthropic"]


@pytest.fixture
def catalog(standin, transactional_db):
    """One stand-in model per provider family, plus faulty ones."""
    return {
        "openai": StandinModelFactory(slug="gpt-standin", provider="openai"),
        "anthropic": StandinModelFactory(slug="claude-standin", provider="anthropic"),
    }


def faulty_model(family: str, directive: str):
    return StandinModelFactory(
        slug=f"{family}-{directive}", provider=family, provider_model=f"standin-{directive}"
    )


@pytest.fixture
def parley(catalog):
    with asgi_server() as base_url:
        yield base_url


@pytest.fixture
def api_key(user):
    return api_key_create(owner=user, name="sdk")


@pytest.fixture
def openai_client(parley, api_key):
    with openai.OpenAI(base_url=f"{parley}/v1", api_key=api_key.secret, max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(parley, api_key):
    with anthropic.Anthropic(base_url=parley, api_key=api_key.secret, max_retries=0) as client:
        yield client


def recorded_calls(count: int = 1, timeout: float = 5.0) -> list:
    """The GatewayCall records, oldest first, once ``count`` exist: a call is recorded just
    after its response has gone out, so the client can be a moment ahead."""
    from llm.models import GatewayCall

    deadline = time.monotonic() + timeout
    while (found := GatewayCall.objects.count()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert found == count, f"{found} calls recorded, expected {count}"
    return list(GatewayCall.objects.order_by("created_at"))


def recorded_call():
    return recorded_calls(1)[0]
