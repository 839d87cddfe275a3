"""Real client libraries, pointed at a live Parley (uvicorn) whose catalog has one stand-in
model per family: each client is tried against a model of its own family and one of the
other, with only the base URL and key changed."""

import pytest

from tests.compat.conftest import api_key, parley  # noqa: F401  (shared fixtures)
from tests.llm.factories import StandinModelFactory

# The catalog slugs of tests/compat/conftest.py's stand-in models, by provider family.
MODELS = {"openai": "gpt-standin", "anthropic": "claude-standin"}


@pytest.fixture
def catalog(standin, transactional_db):
    """The stand-ins as ``seed_models`` seeds them: replies as long as real models allow
    (ChatAnthropic and pydantic-ai ask for 4,096 tokens or more by default)."""
    limits = {"context_window": 200_000, "max_output_tokens": 32_768}
    return {
        family: StandinModelFactory(slug=slug, provider=family, **limits)
        for family, slug in MODELS.items()
    }


@pytest.fixture(params=["openai", "anthropic"], ids=["gpt-model", "claude-model"])
def model(request) -> str:
    """Each test runs against a model of each family."""
    return MODELS[request.param]


@pytest.fixture(autouse=True)
def no_tracing_export(monkeypatch):
    # Client libraries that export traces to their vendor by default must stay on this machine.
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture(params=["openai", "anthropic"], ids=["openai-client", "anthropic-client"])
def client_family(request) -> str:
    """For libraries with a client of each family (LangChain, pydantic-ai): which one."""
    return request.param
