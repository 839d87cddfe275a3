"""accounts' operator commands through call_command: exit status, output, what they change."""

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey

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
            ["--name", "x", "--expires-in-days", "-3"],
            ["--name", "x" * 101],
        ],
    )
    def test_refusals(self, user, args):
        if "--email" not in args:
            args = ["--email", user.email, *args]
        with pytest.raises(CommandError):
            run("create_api_key", *args)
        assert not ApiKey.objects.exists()

    def test_inactive_user_is_refused(self, user):
        user.is_active = False
        user.save()
        with pytest.raises(CommandError, match="inactive"):
            run("create_api_key", "--email", user.email, "--name", "x")
        assert not ApiKey.objects.exists()
