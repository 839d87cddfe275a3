"""The auth throttles limit guessing, not use: failed logins per account and per IP,
registrations per IP, and refresh/verify/logout of valid tokens per user. Counters are in
Redis, so the limits hold across threads and processes."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from conftest import PASSWORD
from tests.test_operable_shell import throttle_rates

pytestmark = pytest.mark.django_db
LOGIN = "/api/v1/auth/token/"


def login(client, email, password=PASSWORD, ip="10.0.0.1"):
    return client.post(LOGIN, {"email": email, "password": password}, REMOTE_ADDR=ip)


class TestFailedLogins:
    def test_an_account_locks_after_its_failures_from_any_address(
        self, api_client, user, other_user, settings
    ):
        throttle_rates(settings, login_failures_account="3/hour")
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # a guesser rotating addresses
            assert login(api_client, user.email, "wrong", ip=ip).status_code == 401
        # Locked: even the right password is refused, so a guesser learns nothing.
        response = login(api_client, user.email.upper(), ip="10.0.0.4")
        assert response.status_code == 429
        assert 3000 < int(response["Retry-After"]) <= 3600
        # Other accounts, from the same addresses, are untouched.
        assert login(api_client, other_user.email, ip="10.0.0.1").status_code == 200

    def test_successful_logins_never_count(self, api_client, user, settings):
        throttle_rates(settings, login_failures_account="2/hour", login_failures_ip="2/hour")
        for _ in range(10):
            assert login(api_client, user.email).status_code == 200
        assert login(api_client, user.email, "wrong").status_code == 401
        assert login(api_client, user.email).status_code == 200

    def test_invalid_input_does_not_count(self, api_client, user, settings):
        throttle_rates(settings, login_failures_ip="2/hour")
        for _ in range(5):
            assert api_client.post(LOGIN, {"email": user.email}).status_code == 400
        assert login(api_client, user.email).status_code == 200

    def test_one_address_guessing_across_accounts_is_stopped(
        self, api_client, user, other_user, settings
    ):
        throttle_rates(settings, login_failures_ip="2/hour")
        login(api_client, "a@example.com", "wrong")
        login(api_client, "b@example.com", "wrong")
        assert login(api_client, user.email).status_code == 429
        assert login(api_client, user.email, ip="10.9.9.9").status_code == 200

    def test_an_office_behind_one_address_can_sign_in_all_day(self, api_client, settings):
        from tests.accounts.factories import UserFactory

        throttle_rates(settings, login_failures_ip="5/hour", login_failures_account="5/hour")
        colleagues = UserFactory.create_batch(30, password=PASSWORD)
        for colleague in colleagues:
            assert login(api_client, colleague.email, ip="192.0.2.1").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_racing_guesses_get_exactly_the_limit(user, settings):
    """20 guesses at once from many threads: exactly the limit reach the password check."""
    throttle_rates(settings, login_failures_account="5/hour")
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(n: int) -> None:
        try:
            client = APIClient()
            barrier.wait(timeout=30)
            status = login(client, user.email, f"guess-{n}", ip=f"10.0.1.{n}").status_code
            with lock:
                statuses.append(status)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [401] * 5 + [429] * 15
    assert login(APIClient(), user.email).status_code == 429


class TestTokensOfSignedInUsers:
    def tokens(self, client, user):
        return login(client, user.email, ip="192.0.2.1").json()

    def test_limited_per_user_not_per_address(self, api_client, user, other_user, settings):
        throttle_rates(settings, token="3/minute", user="1000/minute")
        mine = self.tokens(api_client, user)
        theirs = self.tokens(api_client, other_user)
        office = {"REMOTE_ADDR": "192.0.2.1"}  # both behind one NAT address
        for _ in range(3):
            response = api_client.post(
                "/api/v1/auth/token/refresh/", {"refresh": mine["refresh"]}, **office
            )
            assert response.status_code == 200
            mine = response.json()
        response = api_client.post(
            "/api/v1/auth/token/verify/", {"token": mine["access"]}, **office
        )
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= 60
        # A colleague at the same address is unaffected.
        for path, body in [
            ("/api/v1/auth/token/verify/", {"token": theirs["access"]}),
            ("/api/v1/auth/token/refresh/", {"refresh": theirs["refresh"]}),
        ]:
            assert api_client.post(path, body, **office).status_code == 200

    def test_logout_counts_against_the_user(self, api_client, user, settings):
        throttle_rates(settings, token="1/minute")
        first, second = self.tokens(api_client, user), self.tokens(api_client, user)
        assert (
            api_client.post("/api/v1/auth/logout/", {"refresh": first["refresh"]}).status_code
            == 204
        )
        assert (
            api_client.post("/api/v1/auth/logout/", {"refresh": second["refresh"]}).status_code
            == 429
        )

    def test_invalid_tokens_are_anonymous_requests_limited_per_address(
        self, api_client, user, settings
    ):
        throttle_rates(settings, user="2/minute", token="1000/minute")
        valid = self.tokens(api_client, user)
        for _ in range(2):
            response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": "garbage"})
            assert response.status_code == 401
        assert api_client.post("/api/v1/auth/token/verify/", {"token": "x"}).status_code == 429
        # A valid token is counted for its user, not against the address.
        assert (
            api_client.post("/api/v1/auth/token/verify/", {"token": valid["access"]}).status_code
            == 200
        )
