"""Operator commands through call_command: exit status, output, and what they change."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from llm.models import Conversation, LLMModel, Message, Usage
from tests.llm.factories import ConversationFactory, StandinModelFactory

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestCheckProviders:
    def test_reports_latency_and_fails_on_a_broken_model(self, standin):
        StandinModelFactory(slug="good-gpt", provider="openai")
        StandinModelFactory(slug="good-claude", provider="anthropic")
        StandinModelFactory(slug="broken", provider="openai", provider_model="standin-500")
        LLMModel.objects.create(
            slug="no-key",
            display_name="x",
            provider="anthropic",
            provider_model="claude",
            context_window=1000,
            max_output_tokens=10,
        )
        out = io.StringIO()
        with pytest.raises(CommandError, match="1 model"):
            call_command("check_providers", stdout=out)
        text = out.getvalue()
        assert "good-gpt" in text and "good-claude" in text and " ok in " in text
        assert "broken" in text and "FAILED (transient)" in text
        assert "no-key" in text and "not configured" in text

    def test_single_model_passes(self, standin):
        StandinModelFactory(slug="good-gpt")
        out, _ = run("check_providers", "--model", "good-gpt")
        assert "good-gpt" in out and "ok in" in out

    def test_unknown_model(self):
        with pytest.raises(CommandError):
            run("check_providers", "--model", "nope")


class TestSeedModels:
    def test_loads_the_catalog_idempotently(self):
        call_command("seed_models")
        count = LLMModel.objects.count()
        assert LLMModel.objects.filter(provider="anthropic", is_standin=False).exists()
        assert LLMModel.objects.filter(provider="openai", is_standin=False).exists()
        assert LLMModel.objects.filter(is_standin=True, kind="chat").count() == 2
        assert LLMModel.objects.filter(is_standin=True, kind="embedding").count() == 1
        LLMModel.objects.filter(slug="gpt-4o").update(input_price_per_mtok="9.99")
        call_command("seed_models")
        assert LLMModel.objects.count() == count
        assert str(LLMModel.objects.get(slug="gpt-4o").input_price_per_mtok) == "9.9900"


class TestPurge:
    def make(self, user, model, *, days_old: int, archived: bool = False) -> Conversation:
        conversation = ConversationFactory(owner=user, model=model, archived=archived)
        message = Message.objects.create(
            conversation=conversation,
            position=1,
            role="assistant",
            content="hi",
            model=model,
            input_tokens=10,
            output_tokens=5,
            cost_micros=10_000,
        )
        Usage.objects.create(
            user=user,
            model=model,
            message=message,
            input_tokens=10,
            output_tokens=5,
            cost_micros=10_000,
            created_at=timezone.now(),
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            updated_at=timezone.now() - timedelta(days=days_old)
        )
        return conversation

    def test_purges_old_conversations_and_keeps_usage(self, user, other_user):
        model = StandinModelFactory(slug="p")
        old = self.make(user, model, days_old=40)
        recent = self.make(user, model, days_old=1)
        out = io.StringIO()
        call_command("purge_conversations", "--older-than", "30", stdout=out)
        assert "deleted 1 conversation(s) with 1 message(s)" in out.getvalue()
        assert list(Conversation.objects.all()) == [recent]
        assert not Conversation.objects.filter(pk=old.pk).exists()
        assert Usage.objects.count() == 2
        assert Usage.objects.filter(message__isnull=True).count() == 1

    def test_dry_run_deletes_nothing(self, user):
        model = StandinModelFactory(slug="p")
        self.make(user, model, days_old=40)
        out = io.StringIO()
        call_command("purge_conversations", "--older-than", "30", "--dry-run", stdout=out)
        assert "would delete 1 conversation(s)" in out.getvalue()
        assert Conversation.objects.count() == 1

    def test_user_and_archived_only_filters(self, user, other_user):
        model = StandinModelFactory(slug="p")
        self.make(user, model, days_old=40)
        archived = self.make(user, model, days_old=40, archived=True)
        theirs = self.make(other_user, model, days_old=40, archived=True)
        call_command(
            "purge_conversations",
            "--older-than",
            "30",
            "--user",
            user.email,
            "--archived-only",
            stdout=io.StringIO(),
        )
        remaining = set(Conversation.objects.values_list("pk", flat=True))
        assert archived.pk not in remaining and theirs.pk in remaining and len(remaining) == 2

    def test_batches(self, user):
        model = StandinModelFactory(slug="p")
        for _ in range(5):
            self.make(user, model, days_old=40)
        call_command(
            "purge_conversations", "--older-than", "30", "--batch-size", "2", stdout=io.StringIO()
        )
        assert not Conversation.objects.exists()

    def test_unknown_user_fails(self):
        with pytest.raises(CommandError):
            call_command("purge_conversations", "--older-than", "1", "--user", "nobody@example.com")
