"""Provider fallbacks end to end: when a reply's attempts on its model are used up by
transient errors (stand-in 500/529 faults), it is written by the model's next fallback, and
says so; cost and usage use that model's prices. Permanent errors never fall back. Real
workers, SDKs and stand-in."""

from decimal import Decimal

import pytest

from jobs.models import Job
from llm.models import LLMModel, ModelFallback, Usage
from llm.providers import completion_cost_micros
from project.money import usd
from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/conversations/"


@pytest.fixture(autouse=True)
def quick_retries(settings, standin):
    settings.JOBS_MAX_ATTEMPTS = 2
    settings.JOBS_BACKOFF_BASE = 0.05
    settings.JOBS_BACKOFF_MAX = 0.1


def catalog_entry(slug, provider_model, provider="openai", price="1.00") -> LLMModel:
    return StandinModelFactory(
        slug=slug,
        provider=provider,
        provider_model=provider_model,
        input_price_per_mtok=Decimal(price),
        output_price_per_mtok=Decimal(price) * 5,
    )


def with_fallbacks(model: LLMModel, *fallbacks: LLMModel) -> LLMModel:
    for position, fallback in enumerate(fallbacks, start=1):
        ModelFallback.objects.create(model=model, fallback=fallback, position=position)
    return model


def ask(client, model: LLMModel) -> tuple[str, dict]:
    conversation = client.post(BASE, {"model": model.slug}, format="json").json()["id"]
    posted = client.post(
        f"{BASE}{conversation}/messages/", {"content": "Are you there?"}, format="json"
    )
    assert posted.status_code == 202, posted.content
    return conversation, posted.json()


def reply_of(client, conversation, posted) -> dict:
    return client.get(f"{BASE}{conversation}/messages/{posted['assistant_message']['id']}/").json()


def models_called(standin, before: list) -> list[str]:
    """Models of the requests the stand-in received since ``before`` (its earlier record,
    which holds only the last 100, so counting would not do)."""
    seen = {id(request) for request in before}
    return [r.body["model"] for r in standin.received if id(r) not in seen and r.body]


def test_transient_failures_fall_back_in_order(auth_client, standin):
    good = catalog_entry("fb-good", "standin-chat", price="2.00")
    primary = with_fallbacks(
        catalog_entry("fb-primary", "standin-500", price="10.00"),
        catalog_entry("fb-overloaded", "standin-529", provider="anthropic"),
        good,
    )
    before = standin.received
    conversation, posted = ask(auth_client, primary)
    assert posted["assistant_message"]["model"] == "fb-primary"
    work_until_idle()

    # Two attempts on each failing model, then the good one answered.
    assert models_called(standin, before) == [
        "standin-500",
        "standin-500",
        "standin-529",
        "standin-529",
        "standin-chat",
    ]
    reply = reply_of(auth_client, conversation, posted)
    assert reply["status"] == "completed" and reply["content"].startswith("You said:")
    assert reply["model"] == "fb-good"  # the model that answered
    expected = completion_cost_micros(
        input_tokens=reply["input_tokens"],
        output_tokens=reply["output_tokens"],
        input_price_per_mtok=good.input_price_per_mtok,
        output_price_per_mtok=good.output_price_per_mtok,
    )
    assert reply["cost"] == str(usd(expected))
    usage = Usage.objects.get()
    assert usage.model == good and usage.cost_micros == expected
    job = auth_client.get(f"/api/v1/jobs/{posted['job']['id']}/").json()
    assert job["status"] == "completed" and job["attempts"] == 5
    # The conversation keeps the model it asked for; the next reply starts from it again.
    assert auth_client.get(f"{BASE}{conversation}/").json()["model"] == "fb-primary"


def test_permanent_errors_do_not_fall_back(auth_client, standin):
    primary = with_fallbacks(
        catalog_entry("fb-rejects", "standin-400"), catalog_entry("fb-spare", "standin-chat")
    )
    before = standin.received
    conversation, posted = ask(auth_client, primary)
    work_until_idle()
    assert models_called(standin, before) == ["standin-400"]
    reply = reply_of(auth_client, conversation, posted)
    assert reply["status"] == "failed" and "400" in reply["error"]
    assert reply["model"] == "fb-rejects"
    assert Job.objects.get(pk=posted["job"]["id"]).attempts == 1
    assert not Usage.objects.exists()


def test_fails_when_every_fallback_is_used_up(auth_client, standin):
    primary = with_fallbacks(
        catalog_entry("fb-down", "standin-500"),
        catalog_entry("fb-disabled", "standin-chat"),
        catalog_entry("fb-also-down", "standin-529", provider="anthropic"),
    )
    LLMModel.objects.filter(slug="fb-disabled").update(enabled=False)  # skipped
    before = standin.received
    conversation, posted = ask(auth_client, primary)
    work_until_idle()
    assert models_called(standin, before) == ["standin-500"] * 2 + ["standin-529"] * 2
    reply = reply_of(auth_client, conversation, posted)
    assert reply["status"] == "failed" and "gave up after 4 attempts" in reply["error"]
    assert reply["model"] == "fb-also-down"
    job = Job.objects.get(pk=posted["job"]["id"])
    assert job.status == "failed" and job.attempts == 4


def test_a_model_without_fallbacks_fails_as_before(auth_client, standin):
    conversation, posted = ask(auth_client, catalog_entry("fb-alone", "standin-500"))
    work_until_idle()
    reply = reply_of(auth_client, conversation, posted)
    assert reply["status"] == "failed" and "gave up after 2 attempts" in reply["error"]


def test_fallbacks_are_edited_in_the_admin(client, staff_user, standin):
    primary = catalog_entry("fb-admin", "standin-chat")
    spare = catalog_entry("fb-admin-spare", "standin-chat")
    client.force_login(staff_user)
    url = f"/admin/llm/llmmodel/{primary.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and "fallbacks-TOTAL_FORMS" in page.content.decode()
    form = {
        "slug": primary.slug,
        "display_name": primary.display_name,
        "enabled": "on",
        "provider": primary.provider,
        "provider_model": primary.provider_model,
        "base_url": "",
        "api_key_env": "",
        "is_standin": "on",
        "context_window": primary.context_window,
        "max_output_tokens": primary.max_output_tokens,
        "input_price_per_mtok": primary.input_price_per_mtok,
        "output_price_per_mtok": primary.output_price_per_mtok,
        "fallbacks-TOTAL_FORMS": "1",
        "fallbacks-INITIAL_FORMS": "0",
        "fallbacks-MIN_NUM_FORMS": "0",
        "fallbacks-MAX_NUM_FORMS": "1000",
        "fallbacks-0-position": "1",
        "fallbacks-0-fallback": spare.pk,
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(primary.fallbacks.values_list("fallback__slug", flat=True)) == ["fb-admin-spare"]
