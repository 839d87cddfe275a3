"""One call lifecycle (llm/lifecycle.py): titles pass the same gate and the same accounting as
replies; a settle the database refuses still ends the call and its hold; the policies decided
once hold on every path. Real PostgreSQL/SQLite, Redis, RQ workers and the stand-in."""

import pytest

from budgets.models import BudgetLedger, Reservation, ReservationStatus
from budgets.periods import period_start
from budgets.services import budget_set
from jobs.models import Job
from llm.models import Message, Usage
from llm.titles import TITLE_JOB_KIND
from project.money import micros, usd
from tests.live import work_until_idle
from tests.llm.conftest import CONVERSATIONS, conversation_start, message_post
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


def ledger_of(budget) -> BudgetLedger:
    return BudgetLedger.objects.get(budget=budget, period_start=period_start(budget.period))


def test_titles_are_budgeted_and_the_usage_report_agrees_with_the_budget(
    auth_client, user, chat_model, title_model
):
    # Each conversation costs a short reply and a title: the budget holds a few of them only.
    budget = budget_set(user=user, period="daily", limit_tokens=600)
    refused = None
    for _ in range(10):
        conversation = conversation_start(auth_client, chat_model, params={"max_tokens": 32})
        response = message_post(auth_client, conversation)
        if response.status_code == 429:
            refused = response.json()["error"]
            break
        assert response.status_code == 202, response.content
        work_until_idle()

    assert refused is not None and refused["code"] == "budget_exceeded"
    titles = Job.objects.filter(kind=TITLE_JOB_KIND)
    written = titles.filter(status="completed").count()
    assert written >= 1  # titles were written and counted...
    assert Usage.objects.filter(model=title_model).count() == written
    for refused_title in titles.exclude(status="completed"):  # ...until the budget said no
        assert refused_title.status == "failed" and "budget" in refused_title.last_error.lower()

    ledger = ledger_of(budget)
    usage = auth_client.get("/api/v1/usage/").json()["total"]
    spent = usage["input_tokens"] + usage["output_tokens"]
    assert ledger.spent_tokens == spent <= 600  # titles included, never past the limit
    assert str(usd(ledger.spent_micros)) == usage["cost"]  # exact, to the micro-dollar
    assert ledger.reserved_tokens == 0
    assert not Reservation.objects.filter(status=ReservationStatus.HELD).exists()


def test_a_title_the_budget_cannot_cover_is_not_written_and_nothing_is_spent(
    auth_client, user, chat_model, title_model
):
    budget = budget_set(user=user, period="daily", limit_tokens=10_000)
    conversation = conversation_start(auth_client, chat_model, params={"max_tokens": 32})
    assert message_post(auth_client, conversation).status_code == 202
    # Room for the reply's worst case, not for the title's after it.
    held = Reservation.objects.get(status=ReservationStatus.HELD).amount_tokens
    budget = budget_set(user=user, period="daily", limit_tokens=held + 10)
    work_until_idle()

    title_job = Job.objects.get(kind=TITLE_JOB_KIND)
    assert title_job.status == "failed" and "budget" in title_job.last_error.lower()
    assert auth_client.get(f"{CONVERSATIONS}{conversation}/").json()["title"] == ""
    assert not Usage.objects.filter(model=title_model).exists()
    reply_usage = Usage.objects.get()
    assert ledger_of(budget).spent_tokens == reply_usage.input_tokens + reply_usage.output_tokens
    assert ledger_of(budget).reserved_tokens == 0


def test_a_reply_whose_settle_the_database_refuses_ends_failed_with_its_hold_released(
    auth_client, user, chat_model
):
    budget = budget_set(user=user, period="daily", limit_micros=micros("5"))
    conversation = conversation_start(auth_client, chat_model, params={"max_tokens": 32})
    response = message_post(auth_client, conversation)
    assert response.status_code == 202
    reply_id = response.json()["assistant_message"]["id"]
    # Someone zeroes the ledger's held amount: subtracting the hold would go below zero and
    # the database's budgets_ledger_amounts_not_negative constraint refuses the settle.
    BudgetLedger.objects.filter(pk=ledger_of(budget).pk).update(
        reserved_micros=0, reserved_tokens=0
    )
    work_until_idle()

    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "failed"  # terminal, not stuck in_progress
    assert Job.objects.get(pk=reply.job_id).status == "failed"
    reservation = Reservation.objects.get(reference=f"job:{reply.job_id}")
    assert reservation.status == ReservationStatus.RELEASED
    ledger = ledger_of(budget)
    assert (ledger.reserved_micros, ledger.reserved_tokens, ledger.spent_micros) == (0, 0, 0)
    assert not Usage.objects.exists()  # nothing counted that the budget did not count

    # The conversation is usable again: the next post is accepted and answered.
    again = message_post(auth_client, conversation, "Try again please.")
    assert again.status_code == 202, again.content
    work_until_idle()
    answered = Message.objects.get(pk=again.json()["assistant_message"]["id"])
    assert answered.status == "completed"
    ledger = ledger_of(budget)
    assert ledger.reserved_micros == 0 and ledger.spent_micros == answered.cost_micros


@pytest.mark.parametrize("where", ["create", "update", "regenerate"])
def test_temperature_above_one_for_an_anthropic_model_is_refused_on_conversations(
    auth_client, standin, where
):
    claude = StandinModelFactory(slug="lifecycle-claude", provider="anthropic")
    if where == "create":
        response = auth_client.post(
            CONVERSATIONS, {"model": claude.slug, "params": {"temperature": 1.5}}, format="json"
        )
    elif where == "update":
        conversation = conversation_start(auth_client, claude)
        response = auth_client.patch(
            f"{CONVERSATIONS}{conversation}/", {"params": {"temperature": 1.5}}, format="json"
        )
    else:
        gpt = StandinModelFactory(slug="lifecycle-gpt", provider="openai")
        conversation = conversation_start(
            auth_client, gpt, params={"temperature": 1.5}
        )  # fine for an OpenAI model
        posted = message_post(auth_client, conversation).json()
        work_until_idle()
        response = auth_client.post(
            f"{CONVERSATIONS}{conversation}/messages/{posted['assistant_message']['id']}/regenerate/",
            {"model": claude.slug},
            format="json",
        )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "temperature_out_of_range" and "at most 1" in error["message"]


def _spent(user, api_key_id, team_id, model):
    from llm.lifecycle import GATEWAY, Spent

    return Spent(
        policy=GATEWAY,
        user=user,
        model=model,
        outcome="completed",
        input_tokens=12,
        output_tokens=5,
        api_key_id=api_key_id,
        team_id=team_id,
    )


def test_usage_names_its_key_and_team_while_they_exist_and_drops_them_once_deleted(chat_model):
    """Whether the call's key and team still exist is asked of the per-process caches: no
    query while neither changed, and a key or team deleted while the call ran is left out of
    its usage row (the usage still counts for the user)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.services import api_key_create
    from llm.lifecycle import call_account
    from teams.services import team_delete
    from tests.accounts.factories import UserFactory
    from tests.teams.factories import make_team

    user = UserFactory()
    key = api_key_create(owner=user, name="ci").api_key
    team = make_team(members=[user])
    call_account(_spent(user, key.pk, team.pk, chat_model))  # fills the caches
    with CaptureQueriesContext(connection) as queries:
        call_account(_spent(user, key.pk, team.pk, chat_model))
    asked = [q["sql"] for q in queries.captured_queries if "SELECT" in q["sql"].upper()]
    assert asked == []  # the INSERT only
    rows = Usage.objects.filter(user=user).order_by("pk").values_list("api_key", "team")
    assert list(rows) == [(key.pk, team.pk)] * 2

    key.delete()  # staff delete a key (revoking keeps it)
    team_delete(team=team)
    call_account(_spent(user, key.pk, team.pk, chat_model))  # would fail on the foreign keys
    assert list(rows.all()) == [(None, None)] * 3  # the first two lost theirs too (SET NULL)
