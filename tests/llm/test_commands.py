"""Operator commands through call_command: exit status, output, and what they change."""

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from llm.models import LLMModel
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestCreateApiKey:
    def test_prints_a_working_secret_once(self, user, api_client):
        out, err = run("create_api_key", "--email", user.email.upper(), "--name", "ci")
        secret = out.strip()
        assert secret.startswith("prl_")
        assert "Store it now" in err and secret not in err
        key = ApiKey.objects.get()
        assert key.owner == user and key.name == "ci" and secret not in (key.key_hash, key.prefix)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert api_client.get("/api/v1/auth/me/").json()["email"] == user.email

    def test_expiry(self, user):
        run("create_api_key", "--email", user.email, "--name", "tmp", "--expires-in-days", "7")
        assert ApiKey.objects.get().expires_at is not None

    @pytest.mark.parametrize(
        "args",
        [
            ["--email", "nobody@example.com", "--name", "x"],
            ["--name", "x", "--expires-in-days", "0"],
        ],
    )
    def test_refusals(self, user, args):
        if "--email" not in args:
            args = ["--email", user.email, *args]
        with pytest.raises(CommandError):
            run("create_api_key", *args)
        assert not ApiKey.objects.exists()


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
