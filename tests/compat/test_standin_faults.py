"""The stand-in's faults, reached through Parley's ``/v1/`` by the catalog models that
``seed_models --standin-faults`` adds (as ``scripts/run`` does when it starts the stand-in):
each SDK sees the error class a real provider's failure would give it."""

import io

import anthropic
import openai
import pytest
from django.core.management import call_command

from llm.models import LLMModel
from tests.compat.conftest import recorded_call

PROMPT = [{"role": "user", "content": "Tell me about Parley"}]


@pytest.fixture
def seeded(catalog):
    call_command("seed_models", "--standin-faults", stdout=io.StringIO())


def test_the_fault_models_are_seeded_for_both_families(seeded):
    slugs = set(LLMModel.objects.filter(slug__startswith="standin-").values_list("slug", flat=True))
    for family in ("gpt", "claude"):
        assert {f"standin-{family}-{d}" for d in ("429", "500", "529", "drop", "hang")} <= slugs
    # The plain stand-ins allow replies as long as real models.
    assert LLMModel.objects.get(slug="standin-claude").max_output_tokens >= 8192


OPENAI_ERRORS = [
    ("429", openai.RateLimitError, 429),
    ("500", openai.InternalServerError, 502),
    ("529", openai.InternalServerError, 503),
    ("400", openai.BadRequestError, 400),
    ("drop", openai.InternalServerError, 502),
]


@pytest.mark.parametrize("family", ["gpt", "claude"])
@pytest.mark.parametrize(("directive", "error_class", "status"), OPENAI_ERRORS)
def test_openai_sdk_gets_its_error_class(
    seeded, openai_client, family, directive, error_class, status
):
    with pytest.raises(error_class) as caught:
        openai_client.chat.completions.create(
            model=f"standin-{family}-{directive}", messages=PROMPT
        )
    assert caught.value.status_code == status
    assert (recorded_call().status, recorded_call().http_status) == ("failed", status)


ANTHROPIC_ERRORS = [
    ("429", anthropic.RateLimitError, 429),
    ("500", anthropic.InternalServerError, 502),
    ("400", anthropic.BadRequestError, 400),
]


@pytest.mark.parametrize("family", ["gpt", "claude"])
@pytest.mark.parametrize(("directive", "error_class", "status"), ANTHROPIC_ERRORS)
def test_anthropic_sdk_gets_its_error_class(
    seeded, anthropic_client, family, directive, error_class, status
):
    with pytest.raises(error_class) as caught:
        anthropic_client.messages.create(
            model=f"standin-{family}-{directive}", messages=PROMPT, max_tokens=50
        )
    assert caught.value.status_code == status


def test_a_mid_stream_fault_reaches_both_sdks(seeded, openai_client, anthropic_client):
    with pytest.raises(openai.APIError):
        for _ in openai_client.chat.completions.create(
            model="standin-claude-errorevent", messages=PROMPT, stream=True
        ):
            pass
    with pytest.raises(anthropic.APIStatusError):
        with anthropic_client.messages.stream(
            model="standin-gpt-errorevent", messages=PROMPT, max_tokens=50
        ) as stream:
            for _ in stream.text_stream:
                pass


def test_a_hung_provider_is_a_504(seeded, openai_client, settings):
    settings.LLM_REQUEST_TIMEOUT = 0.5
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(model="standin-claude-hang", messages=PROMPT)
    assert caught.value.status_code == 504
