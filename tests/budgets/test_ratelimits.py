"""Per-minute rate limits in the real Redis, shared across threads and processes."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from django.conf import settings
from django.db import connection

from accounts.services import api_key_create
from budgets.ratelimits import duration, ratelimit_acquire, ratelimit_refund
from budgets.services import rate_limit_set
from project.errors import RateLimited
from tests.accounts.factories import UserFactory
from tests.budgets.test_reservations import _race, on_postgresql


def test_duration_uses_openais_format():
    assert [duration(s) for s in (0, 0.4, 17, 60, 61, 3600)] == [
        "0s",
        "0s",
        "17s",
        "1m0s",
        "1m1s",
        "60m0s",
    ]


@pytest.mark.django_db
class TestLimits:
    def test_no_limit_means_no_headers_and_no_redis(self, user, redis_clean):
        status = ratelimit_acquire(user=user, api_key=None, tokens=100)
        assert status.headers() == {}
        assert redis_clean.keys("parley:rl:*") == []

    def test_headers_count_down_and_the_next_request_is_refused(self, user):
        rate_limit_set(user=user, requests_per_minute=2, tokens_per_minute=1000)
        first = ratelimit_acquire(user=user, api_key=None, tokens=300).headers()
        assert first == {
            "x-ratelimit-limit-requests": "2",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "700",
            "x-ratelimit-reset-tokens": "1m0s",
        }
        second = ratelimit_acquire(user=user, api_key=None, tokens=300).headers()
        assert second["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(RateLimited) as refused:
            ratelimit_acquire(user=user, api_key=None, tokens=1)
        assert refused.value.code == "rate_limit_exceeded"
        assert 1 <= refused.value.retry_after <= 60
        assert refused.value.limits["x-ratelimit-remaining-requests"] == "0"

    def test_tokens_per_minute(self, user):
        rate_limit_set(user=user, requests_per_minute=None, tokens_per_minute=1000)
        ratelimit_acquire(user=user, api_key=None, tokens=800)
        with pytest.raises(RateLimited) as refused:
            ratelimit_acquire(user=user, api_key=None, tokens=300)
        assert refused.value.limits["x-ratelimit-remaining-tokens"] == "200"
        assert "x-ratelimit-limit-requests" not in refused.value.limits
        ratelimit_acquire(user=user, api_key=None, tokens=200)  # a refusal counted nothing

    def test_a_request_larger_than_the_limit_can_never_pass(self, user):
        rate_limit_set(user=user, requests_per_minute=None, tokens_per_minute=1000)
        with pytest.raises(RateLimited) as refused:
            ratelimit_acquire(user=user, api_key=None, tokens=1001)
        assert refused.value.code == "request_too_large"
        assert refused.value.retry_after is None

    def test_the_key_and_its_owner_both_count_and_the_tightest_is_reported(self, user):
        key = api_key_create(owner=user, name="ci").api_key
        other = api_key_create(owner=user, name="laptop").api_key
        rate_limit_set(user=user, requests_per_minute=3, tokens_per_minute=None)
        rate_limit_set(api_key=key, requests_per_minute=1, tokens_per_minute=None)
        status = ratelimit_acquire(user=user, api_key=key, tokens=10)
        assert status.headers()["x-ratelimit-remaining-requests"] == "0"
        assert status.headers()["x-ratelimit-limit-requests"] == "1"
        with pytest.raises(RateLimited):
            ratelimit_acquire(user=user, api_key=key, tokens=10)
        ratelimit_acquire(user=user, api_key=other, tokens=10)
        ratelimit_acquire(user=user, api_key=None, tokens=10)
        with pytest.raises(RateLimited):  # the owner's 3 are used, whichever credential
            ratelimit_acquire(user=user, api_key=other, tokens=10)

    def test_settings_give_defaults_that_a_row_overrides(self, user, settings):
        settings.RATE_LIMIT_USER_RPM = 5
        assert ratelimit_acquire(user=user, api_key=None, tokens=1).limit_requests == 5
        rate_limit_set(user=user, requests_per_minute=9, tokens_per_minute=None)
        assert ratelimit_acquire(user=user, api_key=None, tokens=1).limit_requests == 9

    def test_an_unreachable_redis_fails_open(self, user, settings):
        rate_limit_set(user=user, requests_per_minute=1, tokens_per_minute=None)
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
        settings.REDIS_SOCKET_CONNECT_TIMEOUT = 0.2
        for _ in range(3):
            assert ratelimit_acquire(user=user, api_key=None, tokens=1).headers() == {}

    def test_refund_gives_back_what_was_counted(self, user):
        rate_limit_set(user=user, requests_per_minute=1, tokens_per_minute=None)
        status = ratelimit_acquire(user=user, api_key=None, tokens=10)
        ratelimit_refund(status=status)
        ratelimit_acquire(user=user, api_key=None, tokens=10)


@pytest.mark.django_db(transaction=True)
class TestAcrossThreadsAndProcesses:
    def test_100_threads_against_60_per_minute_admit_60(self):
        user = UserFactory()
        key = api_key_create(owner=user, name="ci").api_key
        rate_limit_set(api_key=key, requests_per_minute=60, tokens_per_minute=None)
        results = _race(100, lambda i: ratelimit_acquire(user=user, api_key=key, tokens=5))
        assert sum(not isinstance(r, Exception) for r in results) == 60
        assert sum(isinstance(r, RateLimited) for r in results) == 40

    @on_postgresql  # the other processes need a database server to read the limit from
    def test_two_processes_share_one_limit(self):
        """Two separate Python processes, 60 attempts each, against one key's 60/minute."""
        user = UserFactory()
        key = api_key_create(owner=user, name="ci").api_key
        rate_limit_set(api_key=key, requests_per_minute=60, tokens_per_minute=None)
        script = textwrap.dedent(
            f"""
            import sys, time, django
            django.setup()
            from accounts.models import ApiKey
            from budgets.ratelimits import ratelimit_acquire
            from project.errors import RateLimited
            key = ApiKey.objects.select_related("owner").get(pk={key.pk})
            time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
            admitted = 0
            for _ in range(60):
                try:
                    ratelimit_acquire(user=key.owner, api_key=key, tokens=5)
                    admitted += 1
                except RateLimited:
                    pass
            print(admitted)
            """
        )
        db = connection.settings_dict
        env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "project.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
        }
        start_at = str(time.time() + 3)  # both start together once Django is loaded
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, start_at],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=60) for p in processes]
        for p, (_, err) in zip(processes, outputs, strict=True):
            assert p.returncode == 0, err
        admitted = [int(out.strip()) for out, _ in outputs]
        assert sum(admitted) == 60, admitted
