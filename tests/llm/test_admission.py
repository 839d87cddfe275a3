"""Admission (model access, rate limits, budget reservation) through llm.admission, the one
entry point the conversation API and the /v1/ surface share."""

import uuid
from decimal import Decimal

import pytest

from accounts.services import api_key_create
from budgets.models import BudgetLedger, Reservation
from budgets.periods import BudgetPeriod
from budgets.services import budget_set, rate_limit_set
from jobs.models import JobStatus
from jobs.services import job_create, jobs_reconcile
from llm.access import model_allowed, model_restrictions, models_allowed
from llm.admission import (
    admission_release,
    admission_reserve,
    admission_settle,
    conversation_input_estimate,
    reply_reference,
    reply_reservations_reconcile,
    worst_case_cost_micros,
)
from llm.models import Message, ModelAccess, ModelFallback
from llm.providers.canonical import ImagePart, TextPart
from llm.providers.canonical_json import parts_dump
from llm.providers.context import estimate_tokens
from project.errors import BudgetExceeded, NotAllowed, RateLimited
from project.money import micros
from tests.llm.factories import ConversationFactory, StandinModelFactory


def _restrict(models, **subject) -> ModelAccess:
    access = ModelAccess.objects.create(**subject)
    access.allowed_models.set(models)
    return access


@pytest.mark.django_db
class TestModelAccess:
    def test_unrestricted_users_may_use_every_model(self, user):
        model = StandinModelFactory()
        assert model_allowed(model=model, user=user)
        assert model_restrictions(user=user).refused_by(model) is None

    def test_a_user_restriction_allows_only_its_models(self, user):
        allowed, other = StandinModelFactory(), StandinModelFactory()
        _restrict([allowed], user=user)
        assert models_allowed([allowed, other], user=user) == [allowed]
        with pytest.raises(NotAllowed) as refused:
            admission_reserve(
                user=user, api_key=None, model=other, input_tokens_estimate=10, max_tokens=10
            )
        assert refused.value.code == "model_not_allowed"
        assert refused.value.details == {"model": other.slug, "restricted_by": "user"}
        assert "Your account is not allowed" in refused.value.message

    def test_a_key_restriction_narrows_its_owner_access(self, user):
        first, second = StandinModelFactory(), StandinModelFactory()
        key = api_key_create(owner=user, name="ci").api_key
        _restrict([first], api_key=key)
        assert models_allowed([first, second], user=user, api_key=key) == [first]
        assert models_allowed([first, second], user=user) == [first, second]
        with pytest.raises(NotAllowed) as refused:
            admission_reserve(
                user=user, api_key=key, model=second, input_tokens_estimate=1, max_tokens=1
            )
        assert refused.value.details["restricted_by"] == "api_key"
        assert "This API key is not allowed" in refused.value.message

    def test_an_empty_restriction_allows_nothing(self, user):
        model = StandinModelFactory()
        _restrict([], user=user)
        assert not model_allowed(model=model, user=user)


@pytest.mark.django_db
class TestAdmission:
    def test_worst_case_is_input_estimate_plus_max_tokens_at_catalog_prices(self):
        model = StandinModelFactory(  # $3 in, $15 out per million
            input_price_per_mtok=Decimal("3.00"), output_price_per_mtok=Decimal("15.00")
        )
        assert worst_case_cost_micros(model=model, input_tokens=1000, max_tokens=100) == 4500

    def test_worst_case_uses_the_dearest_fallback(self):
        model = StandinModelFactory(
            input_price_per_mtok=Decimal("3.00"), output_price_per_mtok=Decimal("15.00")
        )
        dear = StandinModelFactory(
            input_price_per_mtok=Decimal("1.00"), output_price_per_mtok=Decimal("75.00")
        )
        ModelFallback.objects.create(model=model, fallback=dear, position=1)
        assert worst_case_cost_micros(model=model, input_tokens=1000, max_tokens=100) == 10_500

    def test_reserves_against_budgets_and_settles_to_the_actual_cost(self, user):
        model = StandinModelFactory()
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        admission = admission_reserve(
            user=user,
            api_key=None,
            model=model,
            input_tokens_estimate=1000,
            max_tokens=100,
            reference="test:1",
        )
        reservation = admission.reservation
        assert reservation.amount_micros == 4500
        assert reservation.amount_tokens == 1100
        assert reservation.model == model.slug
        admission_settle(
            reservation=reservation,
            input_tokens=400,
            output_tokens=50,
            cost_micros=1950,
        )
        ledger = BudgetLedger.objects.get(budget=budget)
        assert (ledger.spent_micros, ledger.spent_tokens, ledger.reserved_micros) == (
            1950,
            450,
            0,
        )

    def test_release_when_nothing_was_produced(self, user):
        model = StandinModelFactory()
        budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        admission = admission_reserve(
            user=user, api_key=None, model=model, input_tokens_estimate=10, max_tokens=10
        )
        admission_release(reservation=admission.reservation)
        assert Reservation.objects.get().status == "released"
        assert BudgetLedger.objects.get(budget=budget).spent_micros == 0

    def test_a_budget_refusal_does_not_use_up_the_rate_limit(self, user):
        model = StandinModelFactory()
        rate_limit_set(user=user, requests_per_minute=1, tokens_per_minute=None)
        budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("0.000001"))
        with pytest.raises(BudgetExceeded):
            admission_reserve(
                user=user, api_key=None, model=model, input_tokens_estimate=100, max_tokens=100
            )
        budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))
        admission = admission_reserve(
            user=user, api_key=None, model=model, input_tokens_estimate=100, max_tokens=100
        )
        assert admission.headers()["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(RateLimited):
            admission_reserve(
                user=user, api_key=None, model=model, input_tokens_estimate=100, max_tokens=100
            )

    def test_input_estimate_covers_the_whole_conversation(self):
        conversation = ConversationFactory(system_prompt="Be brief.")
        for position, text in enumerate(["héllo " * 50, "a reply", "more"], start=1):
            Message.objects.create(
                conversation=conversation,
                position=position,
                role="user" if position % 2 else "assistant",
                content=text,
            )
        estimate = conversation_input_estimate(conversation=conversation, content="new question")
        stored_bytes = sum(len(t.encode()) for t in ["héllo " * 50, "a reply", "more"])
        assert estimate >= (
            stored_bytes // 3 + estimate_tokens("new question") + estimate_tokens("Be brief.")
        )
        assert estimate <= stored_bytes // 3 + 1 + 4 * 5 + 3 + 10

    def test_input_estimate_counts_images_and_tool_calls(self):
        """A stored response's turns hold more than text: their parts count too (an image's
        data is most of a prompt), and a new turn's parts and tool schemas as ``extra``."""
        conversation = ConversationFactory()
        Message.objects.create(conversation=conversation, position=1, role="user", content="hi")
        plain = conversation_input_estimate(conversation=conversation, content="next")
        image = ImagePart(media_type="image/png", data="A" * 3000)
        Message.objects.create(
            conversation=conversation,
            position=2,
            role="user",
            content="look",
            parts=parts_dump([TextPart("look"), image]),
        )
        with_image = conversation_input_estimate(conversation=conversation, content="next")
        assert with_image - plain >= 1000 + estimate_tokens("look")
        extra = conversation_input_estimate(
            conversation=conversation, content="next", extra="x" * 300
        )
        assert extra - with_image == 100


@pytest.mark.django_db
def test_reconcile_releases_reservations_of_vanished_or_finished_jobs(user, settings):
    settings.JOBS_ENQUEUE_GRACE = 0
    model = StandinModelFactory()
    budget = budget_set(user=user, period=BudgetPeriod.DAILY, limit_micros=micros("1"))

    def reserve(reference: str) -> Reservation:
        return admission_reserve(
            user=user,
            api_key=None,
            model=model,
            input_tokens_estimate=100,
            max_tokens=100,
            reference=reference,
        ).reservation

    vanished = reserve(reply_reference(uuid.uuid4()))
    running_job, _ = job_create(kind="test.kind", owner=user, payload={})
    running = reserve(reply_reference(running_job.pk))
    failed_job, _ = job_create(kind="test.kind", owner=user, payload={})
    failed_job.__class__.objects.filter(pk=failed_job.pk).update(status=JobStatus.FAILED)
    failed = reserve(reply_reference(failed_job.pk))

    assert reply_reservations_reconcile(dry_run=True) == 2
    assert Reservation.objects.filter(status="held").count() == 3
    report = jobs_reconcile()  # the step llm registers with jobs
    assert report.steps["llm.reply_reservations"] == 2
    statuses = dict(Reservation.objects.values_list("pk", "status"))
    assert statuses == {vanished.pk: "released", failed.pk: "released", running.pk: "held"}
    assert BudgetLedger.objects.get(budget=budget).reserved_micros == running.amount_micros
