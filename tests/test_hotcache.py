"""The per-process caches of the hot path (project.hotcache): a second process keeps serving
what it cached without asking the database, and sees a change made in another process at
once — a revoked key, a deactivated user, a new budget limit, a model restriction, a disabled
catalog entry. The other process is a real Python process on the same database and Redis."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.services import api_key_create, api_key_revoke, user_deactivate
from budgets.services import budget_set, rate_limit_set
from llm.admin import _models_enable
from llm.models import LLMModel, ModelAccess
from project.money import micros
from teams.models import Membership
from teams.services import (
    membership_add,
    membership_default_set,
    membership_remove,
    team_api_key_create,
    team_delete,
)
from tests.accounts.factories import UserFactory
from tests.llm.factories import StandinModelFactory
from tests.teams.factories import make_team

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)

# The other process: answers one JSON command per line with what it found and how many SQL
# statements that took.
CHILD = """
import json, sys
import django
django.setup()
from django.db import connection
from django.test.utils import CaptureQueriesContext
from accounts.selectors import api_key_usable, user_by_id
from budgets.ratelimits import limits_for
from budgets.selectors import budgets_applicable
from llm.access import model_restrictions
from llm.selectors import model_by_slug
from project import hotcache
from teams.selectors import team_for_call

for line in sys.stdin:
    command, args = json.loads(line)
    with CaptureQueriesContext(connection) as queries, hotcache.snapshot():
        if command == "key":
            key = api_key_usable(secret=args["secret"])
            result = key.owner_id if key is not None else None
        elif command == "user":
            user = user_by_id(user_id=args["id"])
            result = user.is_active if user is not None else None
        elif command == "budgets":
            found = budgets_applicable(user_id=args["user"], api_key_id=None)
            result = sorted(budget.limit_micros for budget in found)
        elif command == "limits":
            user = user_by_id(user_id=args["user"])
            result = [[s.requests_per_minute, s.tokens_per_minute] for s in limits_for(user=user, api_key=None)]
        elif command == "access":
            user = user_by_id(user_id=args["user"])
            allowed = model_restrictions(user=user).user
            result = sorted(allowed) if allowed is not None else None
        elif command == "model":
            model = model_by_slug(slug=args["slug"])
            result = model.enabled if model is not None else None
        elif command == "team":
            user = user_by_id(user_id=args["user"])
            key = api_key_usable(secret=args["secret"]) if args.get("secret") else None
            try:
                team = team_for_call(user=user, api_key=key, requested=args.get("requested"))
                result = team.slug if team is not None else None
            except Exception as exc:
                result = getattr(exc, "code", repr(exc))
    print(json.dumps({"result": result, "queries": len(queries)}), flush=True)
"""


class OtherProcess:
    def __init__(self) -> None:
        db = connection.settings_dict
        if connection.vendor == "postgresql":
            url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        else:
            url = f"sqlite:///{db['NAME']}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings.test",
            "DATABASE_URL": url,
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def ask(self, command: str, **args) -> tuple[object, int]:
        self.process.stdin.write(json.dumps([command, args]) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the other process died"
        answer = json.loads(line)
        return answer["result"], answer["queries"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def other():
    process = OtherProcess()
    yield process
    process.close()


def test_a_revoked_key_is_refused_by_another_process_at_once(other):
    user = UserFactory()
    issued = api_key_create(owner=user, name="ci")
    assert other.ask("key", secret=issued.secret) == (user.pk, 1)
    assert other.ask("key", secret=issued.secret) == (user.pk, 0)  # cached: no SQL
    api_key_revoke(api_key=issued.api_key)
    assert other.ask("key", secret=issued.secret)[0] is None


def test_a_deactivated_user_and_their_keys_are_refused_at_once(other):
    user = UserFactory()
    issued = api_key_create(owner=user, name="ci")
    assert other.ask("key", secret=issued.secret)[0] == user.pk
    assert other.ask("user", id=user.pk) == (True, 1)
    assert other.ask("user", id=user.pk) == (True, 0)
    user_deactivate(user=user)
    assert other.ask("user", id=user.pk)[0] is False
    assert other.ask("key", secret=issued.secret)[0] is None


def test_budget_limit_rate_limit_and_model_access_changes_are_seen_at_once(other):
    user = UserFactory()
    budget_set(user=user, period="daily", limit_micros=micros("1"))
    assert other.ask("budgets", user=user.pk) == ([1_000_000], 1)
    assert other.ask("budgets", user=user.pk) == ([1_000_000], 0)
    budget_set(user=user, period="daily", limit_micros=micros("0.5"))
    budget_set(user=user, period="monthly", limit_micros=micros("3"))
    assert other.ask("budgets", user=user.pk)[0] == [500_000, 3_000_000]

    rate_limit_set(user=user, requests_per_minute=5, tokens_per_minute=None)
    assert other.ask("limits", user=user.pk)[0] == [[5, 0]]
    rate_limit_set(user=user, requests_per_minute=7, tokens_per_minute=900)
    assert other.ask("limits", user=user.pk)[0] == [[7, 900]]

    model, other_model = StandinModelFactory(), StandinModelFactory()
    assert other.ask("access", user=user.pk)[0] is None  # unrestricted
    ModelAccess.objects.create(user=user).allowed_models.set([model])
    assert other.ask("access", user=user.pk)[0] == [model.pk]
    ModelAccess.objects.get(user=user).allowed_models.add(other_model)
    assert other.ask("access", user=user.pk)[0] == sorted([model.pk, other_model.pk])


def test_a_catalog_entry_disabled_in_bulk_is_seen_at_once(other):
    model = StandinModelFactory()
    assert other.ask("model", slug=model.slug) == (True, 1)
    assert other.ask("model", slug=model.slug) == (True, 0)
    _models_enable(LLMModel.objects.filter(pk=model.pk), enabled=False)  # the admin action
    assert other.ask("model", slug=model.slug)[0] is False


def test_the_team_a_call_is_charged_to_follows_membership_and_key_changes_at_once(other):
    user = UserFactory()
    first, second = make_team(members=[user]), make_team(members=[user])
    assert other.ask("team", user=user.pk)[0] == first.slug  # the first team became the default
    assert other.ask("team", user=user.pk) == (first.slug, 0)  # cached: no SQL
    assert other.ask("team", user=user.pk, requested=second.slug) == (second.slug, 0)
    assert other.ask("team", user=user.pk, requested=str(second.pk)) == (second.slug, 0)
    assert other.ask("team", user=user.pk, requested="nope") == ("team_not_found", 0)

    membership_default_set(membership=Membership.objects.get(team=second, user=user))
    assert other.ask("team", user=user.pk)[0] == second.slug
    membership_remove(membership=Membership.objects.get(team=second, user=user))
    assert other.ask("team", user=user.pk)[0] == first.slug  # the default moved back
    assert other.ask("team", user=user.pk, requested=second.slug)[0] == "team_not_found"

    scoped = team_api_key_create(team=first, created_by=user, name="scoped", service=False)
    assert other.ask("team", user=user.pk, secret=scoped.secret)[0] == first.slug
    assert other.ask("team", user=user.pk, secret=scoped.secret) == (first.slug, 0)
    assert other.ask("team", user=user.pk, secret=scoped.secret, requested=second.slug)[0] == (
        "team_mismatch"
    )
    # A scoped personal key stops charging the team once its owner is no longer in it; a
    # service key of the team keeps charging it.
    service = team_api_key_create(team=first, created_by=user, name="svc", service=True)
    Membership.objects.filter(team=first, user=user).delete()  # as the admin's delete does
    assert other.ask("team", user=user.pk, secret=scoped.secret)[0] == "team_membership_ended"
    assert other.ask("team", user=user.pk)[0] is None  # in no team any more
    owner = service.api_key.owner
    assert other.ask("team", user=owner.pk, secret=service.secret)[0] == first.slug

    membership_add(team=second, user=user)
    assert other.ask("team", user=user.pk)[0] == second.slug
    team_delete(team=second)
    assert other.ask("team", user=user.pk)[0] is None
